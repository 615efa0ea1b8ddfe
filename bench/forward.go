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

// httpClient is one keep-alive HTTP/1.1 connection sending the same GET
// for the 1 KiB body again and again. open makes its connection: plain TCP
// to the origin or to a proxy (forward requests), or a tunnel with TLS on
// top (HTTPS).
type httpClient struct {
	what       string // for errors: "forward", "https"
	open       func(ctx context.Context) (net.Conn, error)
	request    []byte
	conn       net.Conn
	br         *bufio.Reader
	unwatch    func()
	reconnects int
}

// newForwardClient sends origin-form GETs to the origin, or absolute-form
// ones (RFC 9112 3.2.2) to the proxy of r.
func newForwardClient(r route, origin string) *httpClient {
	addr, target := origin, "/1k"
	if r.front != FrontDirect {
		addr, target = r.proxy, "http://"+origin+"/1k"
	}
	return &httpClient{
		what: "forward",
		open: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
		request: []byte("GET " + target + " HTTP/1.1\r\nHost: " + origin + "\r\nUser-Agent: hopper-bench\r\n\r\n"),
	}
}

// get sends one request and reads its whole response. A request on a
// reused connection that fails before any response byte is retried once on
// a fresh connection, as HTTP clients do when a server closed an idle
// keep-alive connection.
func (c *httpClient) get(ctx context.Context) error {
	reused := c.conn != nil
	err := c.try(ctx)
	if err != nil && reused {
		c.reset()
		err = c.try(ctx)
	}
	if err != nil {
		c.reset()
	}
	return err
}

func (c *httpClient) try(ctx context.Context) error {
	if c.conn == nil {
		conn, err := c.open(ctx)
		if err != nil {
			return err
		}
		c.conn = conn
		c.br = bufio.NewReaderSize(conn, 4096)
		c.unwatch = interruptOnDone(ctx, conn)
		c.reconnects++
	}
	_ = c.conn.SetDeadline(time.Now().Add(safety))
	if _, err := c.conn.Write(c.request); err != nil {
		return fmt.Errorf("%s write: %w", c.what, err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return fmt.Errorf("%s response: %w", c.what, err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return fmt.Errorf("%s body: %w", c.what, err)
	}
	if resp.StatusCode != http.StatusOK || n != httpBodySize {
		return fmt.Errorf("%w: status %d, %d body bytes", ErrHTTP, resp.StatusCode, n)
	}
	if resp.Close {
		c.reset()
	}
	return nil
}

func (c *httpClient) reset() {
	if c.conn != nil {
		c.unwatch()
		_ = c.conn.Close()
		c.conn, c.br = nil, nil
	}
}

// forwardResult adds to a closed-loop run how many connections it took.
type forwardResult struct {
	rateResult
	conns int
}

// forward sends GETs for d from conns keep-alive clients.
func forward(ctx context.Context, o *origins, r route, conns int, d time.Duration) forwardResult {
	clients := make([]*httpClient, conns)
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
