package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
)

// BareRelayEnv names the environment variable that turns a process running
// Main into the bare relay column's proxy: its value is the loopback address
// to listen on. The harness starts its own executable that way, so the bare
// relay needs no separate binary.
const BareRelayEnv = "HOPPER_BENCH_BARE_RELAY"

// BareUpstreamEnv, beside BareRelayEnv, names an upstream (another bare
// relay) that the bare relay reaches every target through with a CONNECT:
// the floor of chained mode.
const BareUpstreamEnv = "HOPPER_BENCH_BARE_UPSTREAM"

// ServeBareRelay is the least a proxy can do: read a CONNECT request or a
// SOCKS5 no-auth CONNECT, dial the target, answer, then io.Copy each way
// (splice on Linux) and half-close after EOF. No logging, limits, timeouts
// or pooling. Measured beside hopper it shows what one proxy hop costs on
// the machine itself: two loopback TCP connections, the proxy's wake-ups,
// the kernel's copying, which no proxy's code can remove. With upstream
// set it opens each tunnel with a CONNECT through that proxy instead of
// dialling the target. It serves ln until ctx ends and returns once every
// connection has closed.
func ServeBareRelay(ctx context.Context, ln net.Listener, upstream string) error {
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	var mu sync.Mutex
	conns := make(map[net.Conn]struct{})
	closeAll := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		for c := range conns {
			_ = c.Close()
		}
	})
	defer closeAll()
	for {
		c, err := ln.Accept()
		if err != nil {
			wg.Wait()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("bare relay: %w", err)
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			bareConn(ctx, c, upstream)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		})
	}
}

var errBareRequest = errors.New("bare relay: bad request")

// bareConn serves one client connection to its end.
func bareConn(ctx context.Context, c net.Conn, upstream string) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 512)
	first, err := br.Peek(1)
	if err != nil {
		return
	}
	var target string
	var reply []byte
	if first[0] == 5 {
		target, err = socks5Request(br, c)
		reply = []byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0}
	} else {
		target, err = connectRequest(br)
		reply = []byte("HTTP/1.1 200 Connection established\r\n\r\n")
	}
	if err != nil {
		return
	}
	via := route{front: FrontDirect}
	if upstream != "" {
		via = route{front: FrontCONNECT, proxy: upstream}
	}
	up, err := via.dial(ctx, target)
	if err != nil {
		if first[0] == 5 {
			_, _ = c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
		} else {
			_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		}
		return
	}
	defer up.Close()
	if _, err := c.Write(reply); err != nil {
		return
	}
	// Clients wait for the reply before sending, so br holds nothing more;
	// whatever it does hold goes first all the same.
	if n := br.Buffered(); n > 0 {
		buf, _ := br.Peek(n)
		if _, err := up.Write(buf); err != nil {
			return
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		_, _ = io.Copy(up, c)
		closeWriteConn(up)
	})
	_, _ = io.Copy(c, up)
	closeWriteConn(c)
	wg.Wait()
}

func closeWriteConn(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// connectRequest reads a CONNECT request head and returns its authority.
func connectRequest(br *bufio.Reader) (string, error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errBareRequest, err)
	}
	if req.Method != http.MethodConnect {
		return "", fmt.Errorf("%w: method %s", errBareRequest, req.Method)
	}
	return req.Host, nil
}

// socks5Request answers the no-auth greeting and reads a CONNECT request.
func socks5Request(br *bufio.Reader, w io.Writer) (string, error) {
	var head [2]byte
	if _, err := io.ReadFull(br, head[:]); err != nil {
		return "", err
	}
	if _, err := br.Discard(int(head[1])); err != nil {
		return "", err
	}
	if _, err := w.Write([]byte{5, 0}); err != nil {
		return "", err
	}
	var req [4]byte
	if _, err := io.ReadFull(br, req[:]); err != nil {
		return "", err
	}
	if req[1] != 1 {
		return "", fmt.Errorf("%w: SOCKS command %d", errBareRequest, req[1])
	}
	var host string
	switch req[3] {
	case 1, 4:
		ip := make(net.IP, 4)
		if req[3] == 4 {
			ip = make(net.IP, 16)
		}
		if _, err := io.ReadFull(br, ip); err != nil {
			return "", err
		}
		host = ip.String()
	case 3:
		n, err := br.ReadByte()
		if err != nil {
			return "", err
		}
		name := make([]byte, n)
		if _, err := io.ReadFull(br, name); err != nil {
			return "", err
		}
		if !hostName(name) {
			return "", fmt.Errorf("%w: SOCKS domain name %q", errBareRequest, name)
		}
		host = string(name)
	default:
		return "", fmt.Errorf("%w: SOCKS address type %d", errBareRequest, req[3])
	}
	var port [2]byte
	if _, err := io.ReadFull(br, port[:]); err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(port[:])))), nil
}

// hostName reports whether b is a non-empty DNS name of letters, digits,
// hyphens, underscores and dots: nothing a host:port could misread.
func hostName(b []byte) bool {
	for _, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			return false
		}
	}
	return len(b) > 0
}

// serveBareRelayFromEnv runs the bare relay when BareRelayEnv is set,
// reporting whether it did; ctx ends it (the harness sends SIGTERM).
func serveBareRelayFromEnv(ctx context.Context) (bool, error) {
	addr := os.Getenv(BareRelayEnv)
	if addr == "" {
		return false, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return true, fmt.Errorf("bare relay: %w", err)
	}
	return true, ServeBareRelay(ctx, ln, os.Getenv(BareUpstreamEnv))
}
