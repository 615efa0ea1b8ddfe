package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// forwardClient is one keep-alive HTTP/1.1 connection sending GETs either to
// the origin (origin-form) or to a proxy (absolute-form, RFC 9112 3.2.2).
type forwardClient struct {
	dialAddr   string
	request    []byte
	conn       net.Conn
	br         *bufio.Reader
	unwatch    func()
	reconnects int
}

func newForwardClient(r route, origin string) *forwardClient {
	f := &forwardClient{dialAddr: origin}
	target := "/1k"
	if r.front != FrontDirect {
		f.dialAddr = r.proxy
		target = "http://" + origin + "/1k"
	}
	f.request = []byte("GET " + target + " HTTP/1.1\r\nHost: " + origin + "\r\nUser-Agent: hopper-bench\r\n\r\n")
	return f
}

// get sends one request and reads its whole response. A request on a
// reused connection that fails before any response byte is retried once on
// a fresh connection, as HTTP clients do when a server closed an idle
// keep-alive connection.
func (f *forwardClient) get(ctx context.Context) error {
	reused := f.conn != nil
	err := f.try(ctx)
	if err != nil && reused {
		f.reset()
		err = f.try(ctx)
	}
	if err != nil {
		f.reset()
	}
	return err
}

func (f *forwardClient) try(ctx context.Context) error {
	if f.conn == nil {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", f.dialAddr)
		if err != nil {
			return err
		}
		f.conn = c
		f.br = bufio.NewReaderSize(c, 4096)
		f.unwatch = interruptOnDone(ctx, c)
		f.reconnects++
	}
	_ = f.conn.SetDeadline(time.Now().Add(safety))
	if _, err := f.conn.Write(f.request); err != nil {
		return fmt.Errorf("forward write: %w", err)
	}
	resp, err := http.ReadResponse(f.br, nil)
	if err != nil {
		return fmt.Errorf("forward response: %w", err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return fmt.Errorf("forward body: %w", err)
	}
	if resp.StatusCode != http.StatusOK || n != httpBodySize {
		return fmt.Errorf("%w: status %d, %d body bytes", ErrHTTP, resp.StatusCode, n)
	}
	if resp.Close {
		f.reset()
	}
	return nil
}

func (f *forwardClient) reset() {
	if f.conn != nil {
		f.unwatch()
		_ = f.conn.Close()
		f.conn = nil
		f.br = nil
	}
}

// forwardResult adds to a closed-loop run how many connections it took.
type forwardResult struct {
	rateResult
	conns int
}

// forward sends GETs for d from conns keep-alive clients.
func forward(ctx context.Context, o *origins, r route, conns int, d time.Duration) forwardResult {
	clients := make([]*forwardClient, conns)
	for i := range clients {
		clients[i] = newForwardClient(r, o.httpAddr())
	}
	res := closedLoop(ctx, conns, d, func(ctx context.Context, w int) error {
		return clients[w].get(ctx)
	})
	out := forwardResult{rateResult: res}
	for _, c := range clients {
		out.conns += c.reconnects
		c.reset()
	}
	return out
}
