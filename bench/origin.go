package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// Stream protocol of the bulk origin. The client opens with a 9-byte header:
// one mode byte and an 8-byte big-endian stream ID.
//
//   - modeUpload: the client sends until it half-closes; the origin reads to
//     EOF, records the count under the ID and closes.
//   - modeDownload: the origin sends until the client sends one more byte (or
//     closes), then records what it wrote under the ID and closes, so the
//     client reads every byte the origin wrote followed by EOF.
//
// The client compares its own count with the origin's record: a proxy that
// loses or invents bytes fails the run.
const (
	modeUpload   byte = 'U'
	modeDownload byte = 'D'
	headerLen         = 9
	bulkChunk         = 256 << 10
)

// httpBodySize is the size of the HTTP origin's response body.
const httpBodySize = 1024

// origins are the loopback servers every scenario talks to, run inside the
// harness process.
type origins struct {
	bulk, echo, http, https net.Listener
	// roots trusts the HTTPS origin's self-signed certificate, cert.
	roots *x509.CertPool
	cert  *x509.Certificate
	tally tally

	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	done  bool
}

// startOrigins listens on four loopback ports and serves until close.
func startOrigins() (*origins, error) {
	cert, root, err := originCert()
	if err != nil {
		return nil, fmt.Errorf("origin certificate: %w", err)
	}
	o := &origins{conns: make(map[net.Conn]struct{}), roots: x509.NewCertPool(), cert: root}
	o.roots.AddCert(root)
	var lns []net.Listener
	for range 4 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			for _, l := range lns {
				_ = l.Close()
			}
			return nil, fmt.Errorf("origin listen: %w", err)
		}
		lns = append(lns, ln)
	}
	o.bulk, o.echo, o.http = lns[0], lns[1], lns[2]
	o.https = tls.NewListener(lns[3], &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	o.tally.init()
	response := httpResponse(false)
	closing := httpResponse(true)
	o.serve(o.bulk, o.serveBulk)
	o.serve(o.echo, serveEcho)
	o.serve(o.http, func(c net.Conn) { serveHTTP(c, response, closing) })
	o.serve(o.https, func(c net.Conn) { serveHTTP(c, response, closing) })
	return o, nil
}

func (o *origins) bulkAddr() string  { return o.bulk.Addr().String() }
func (o *origins) echoAddr() string  { return o.echo.Addr().String() }
func (o *origins) httpAddr() string  { return o.http.Addr().String() }
func (o *origins) httpsAddr() string { return o.https.Addr().String() }

// serve runs an accept loop owned by o.
func (o *origins) serve(ln net.Listener, handle func(net.Conn)) {
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		o.acceptLoop(ln, handle)
	}()
}

func (o *origins) acceptLoop(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond) // EMFILE and friends: back off
			continue
		}
		if !o.track(c, true) {
			_ = c.Close()
			return
		}
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			defer o.track(c, false)
			defer c.Close()
			handle(c)
		}()
	}
}

func (o *origins) track(c net.Conn, add bool) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if add {
		if o.done {
			return false
		}
		o.conns[c] = struct{}{}
		return true
	}
	delete(o.conns, c)
	return true
}

// close stops the listeners, closes every open connection and waits for
// every origin goroutine.
func (o *origins) close() {
	_ = o.bulk.Close()
	_ = o.echo.Close()
	_ = o.http.Close()
	_ = o.https.Close()
	o.mu.Lock()
	o.done = true
	for c := range o.conns {
		_ = c.Close()
	}
	o.mu.Unlock()
	o.wg.Wait()
}

func (o *origins) serveBulk(c net.Conn) {
	var h [headerLen]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return
	}
	id := binary.BigEndian.Uint64(h[1:])
	switch h[0] {
	case modeUpload:
		n, last := drain(c)
		o.tally.report(id, count{n: n, last: last})
	case modeDownload:
		o.tally.report(id, count{n: sendUntilStopped(c)})
	}
}

// sendUntilStopped writes to c until the peer sends a byte or closes, and
// returns how many bytes were written in full.
func sendUntilStopped(c net.Conn) int64 {
	stop := make(chan struct{})
	go func() {
		defer close(stop)
		var b [1]byte
		_, _ = c.Read(b[:])
	}()
	buf := make([]byte, bulkChunk)
	var n int64
	for {
		select {
		case <-stop:
			return n
		default:
		}
		w, err := c.Write(buf)
		n += int64(w)
		if err != nil {
			<-stop
			return n
		}
	}
}

// drain reads c to EOF or error in large reads (io.Discard's ReadFrom would
// read 8 KiB at a time) and returns the count and when the last byte came.
func drain(c net.Conn) (int64, time.Time) {
	buf := make([]byte, bulkChunk)
	var n int64
	var last time.Time
	for {
		m, err := c.Read(buf)
		if m > 0 {
			n += int64(m)
			last = time.Now()
		}
		if err != nil {
			return n, last
		}
	}
}

func serveEcho(c net.Conn) {
	_, _ = io.CopyBuffer(c, struct{ io.Reader }{c}, make([]byte, 32<<10))
}

func httpResponse(closing bool) []byte {
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ")
	b.WriteString(strconv.Itoa(httpBodySize))
	if closing {
		b.WriteString("\r\nConnection: close")
	}
	b.WriteString("\r\n\r\n")
	b.Write(bytes.Repeat([]byte{'x'}, httpBodySize))
	return b.Bytes()
}

// serveHTTP answers every request on c with a 1 KiB body, keeping the
// connection alive unless the request says otherwise. It ignores request
// bodies other than Content-Length ones, which is all the harness and the
// proxies it measures send.
func serveHTTP(c net.Conn, keep, closing []byte) {
	r := bufio.NewReaderSize(c, 4096)
	for {
		closeAfter, err := readRequestHead(r)
		if err != nil {
			return
		}
		resp := keep
		if closeAfter {
			resp = closing
		}
		if _, err := c.Write(resp); err != nil || closeAfter {
			return
		}
	}
}

// readRequestHead consumes one request head and any Content-Length body and
// reports whether the connection should close after the response.
func readRequestHead(r *bufio.Reader) (closeAfter bool, err error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return false, err
	}
	closeAfter = bytes.Contains(line, []byte("HTTP/1.0"))
	var body int64
	for {
		line, err = r.ReadSlice('\n')
		if err != nil {
			return false, err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Connection")):
			switch {
			case bytes.EqualFold(value, []byte("close")):
				closeAfter = true
			case bytes.EqualFold(value, []byte("keep-alive")):
				closeAfter = false
			}
		case bytes.EqualFold(name, []byte("Content-Length")):
			body, _ = strconv.ParseInt(string(value), 10, 64)
		}
	}
	if body > 0 {
		if _, err := r.Discard(int(body)); err != nil {
			return false, err
		}
	}
	return closeAfter, nil
}

// tally carries byte counts from the bulk origin to the client that owns the
// stream ID.
type tally struct {
	mu   sync.Mutex
	next uint64
	subs map[uint64]chan count
}

// count is the origin's side of one stream: the bytes it received or sent
// in full, and for uploads when the last of them arrived.
type count struct {
	n    int64
	last time.Time
}

func (t *tally) init() { t.subs = make(map[uint64]chan count) }

// expect reserves a fresh stream ID; its count arrives on the channel.
func (t *tally) expect() (uint64, <-chan count) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.next++
	ch := make(chan count, 1)
	t.subs[t.next] = ch
	return t.next, ch
}

// forget drops an ID whose count is no longer wanted.
func (t *tally) forget(id uint64) {
	t.mu.Lock()
	delete(t.subs, id)
	t.mu.Unlock()
}

func (t *tally) report(id uint64, n count) {
	t.mu.Lock()
	ch, ok := t.subs[id]
	delete(t.subs, id)
	t.mu.Unlock()
	if ok {
		ch <- n
	}
}

// awaitCount waits for the origin's count of stream id.
func (t *tally) awaitCount(ctx context.Context, id uint64, ch <-chan count, limit time.Duration) (count, error) {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case n := <-ch:
		return n, nil
	case <-timer.C:
	case <-ctx.Done():
	}
	t.forget(id)
	return count{}, fmt.Errorf("%w: origin never finished stream %d", ErrBytesMismatch, id)
}
