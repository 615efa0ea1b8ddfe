package socks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"

	"github.com/things-go/go-socks5"
	"github.com/things-go/go-socks5/statute"

	"github.com/hopper-proxy/hopper/dial"
)

// RFC 1929 sub-negotiation status.
const (
	authVersion byte = 0x01
	authSuccess byte = 0x00
	authFailure byte = 0x01
)

// errInternal marks a go-socks5 behaviour this package does not expect (a
// writer or reader of another type than it hands over); it cannot happen
// with go-socks5 v0.1.3.
var errInternal = errors.New("socks: unexpected go-socks5 state")

var (
	_ socks5.Authenticator = userPassAuth{}
	_ socks5.Authenticator = noAuth{}
	_ socks5.NameResolver  = unresolved{}
)

// newSOCKS5 builds the go-socks5 server shared by every SOCKS5 stream. All
// per-connection state travels in the s5Conn it is given, since go-socks5's
// ServeConn starts from context.Background.
func (s *Server) newSOCKS5() *socks5.Server {
	// Preference order: username/password whenever the client offers it, so
	// session controls arrive even with auth off; otherwise no auth, unless
	// auth is required.
	methods := []socks5.Authenticator{userPassAuth{s}}
	if s.cfg.Auth == nil {
		methods = append(methods, noAuth{})
	}
	return socks5.NewServer(
		socks5.WithAuthMethods(methods),
		socks5.WithResolver(unresolved{}),
		socks5.WithConnectHandle(s.handleConnect5),
		socks5.WithBindHandle(handleUnsupported5),
		socks5.WithAssociateHandle(handleUnsupported5),
		// Failures are logged once, in the access-log line.
		socks5.WithLogger(socks5.NewLogger(log.New(io.Discard, "", 0))),
	)
}

// serveSOCKS5 runs go-socks5's handshake on st.conn; the CONNECT handler takes
// over from there.
func (s *Server) serveSOCKS5(st *stream) {
	c := &s5Conn{Conn: st.conn, st: st, first: socks5Version}
	err := s.s5.ServeConn(c)
	if st.relaying {
		return
	}
	if err == nil && st.result == "" {
		err = errInternal
	}
	if err == nil {
		return
	}
	if errors.Is(err, statute.ErrNoSupportedAuth) {
		st.fail(resultAuthFailed, err)
	}
	st.fail(st.handshakeResult(c.readErr), err)
}

// s5Conn is the client connection as go-socks5 sees it. It replays the
// version byte the listener consumed, remembers the first read error (to tell
// a client that left from a malformed request), ignores Close (the listener
// owns the connection) and carries the stream to the handlers below. It is
// never relayed through: tunnels use the raw connection.
type s5Conn struct {
	net.Conn
	st       *stream
	first    byte
	replayed bool
	readErr  error
}

func (c *s5Conn) Read(p []byte) (int, error) {
	if !c.replayed && len(p) > 0 {
		c.replayed = true
		p[0] = c.first
		return 1, nil
	}
	n, err := c.Conn.Read(p)
	if err != nil && c.readErr == nil {
		c.readErr = err
	}
	return n, err
}

// Close does nothing: the listener closes the connection once the stream
// has ended.
func (c *s5Conn) Close() error { return nil }

// handleConnect5 serves CONNECT (go-socks5's connect handler). The context
// go-socks5 passes is derived from context.Background; ours is in the stream.
func (s *Server) handleConnect5(_ context.Context, w io.Writer, req *socks5.Request) error {
	c, ok := w.(*s5Conn)
	br, ok2 := req.Reader.(*bufio.Reader)
	if !ok || !ok2 {
		return errInternal
	}
	st := c.st
	reply := func(err error, bound net.Addr) error {
		return writeReply5(st.conn, replyCode5(err), bound)
	}
	target, err := target5(req.RawDestAddr)
	st.req.Target = target
	if err != nil {
		st.fail(resultBadRequest, err)
		_ = reply(err, nil)
		return nil
	}
	s.connect(st, br, reply)
	return nil
}

// target5 renders a request's destination as host:port, a name left
// unresolved.
func target5(a *statute.AddrSpec) (string, error) {
	var host string
	switch a.AddrType {
	case statute.ATYPDomain:
		host = a.FQDN
	default:
		host = a.IP.String()
	}
	target := net.JoinHostPort(host, strconv.Itoa(a.Port))
	if !validHost(host) || a.Port == 0 {
		return target, fmt.Errorf("%w: destination %q", errBadRequest, target)
	}
	return target, nil
}

// handleUnsupported5 answers BIND and UDP ASSOCIATE with 0x07.
func handleUnsupported5(_ context.Context, w io.Writer, req *socks5.Request) error {
	c, ok := w.(*s5Conn)
	if !ok {
		return errInternal
	}
	err := fmt.Errorf("%w: %#x", errUnsupported, req.Command)
	c.st.req.Target = req.RawDestAddr.String()
	c.st.fail(resultUnsupported, err)
	_ = writeReply5(c.st.conn, replyCode5(err), nil)
	return nil
}

// unresolved replaces go-socks5's resolver, which would resolve names here:
// names go to the Dialer as they came (socks5h semantics).
type unresolved struct{}

func (unresolved) Resolve(ctx context.Context, _ string) (context.Context, net.IP, error) {
	return ctx, nil, nil
}

// userPassAuth is RFC 1929 username/password, selected whenever offered. With
// auth off any credentials pass; the username is parsed for its controls
// either way.
type userPassAuth struct{ s *Server }

func (userPassAuth) GetCode() uint8 { return statute.MethodUserPassAuth }

func (a userPassAuth) Authenticate(r io.Reader, w io.Writer, _ string) (*socks5.AuthContext, error) {
	c, ok := w.(*s5Conn)
	if !ok {
		return nil, errInternal
	}
	st := c.st
	if _, err := st.conn.Write([]byte{socks5Version, statute.MethodUserPassAuth}); err != nil {
		return nil, err
	}
	upr, err := statute.ParseUserPassRequest(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadRequest, err)
	}
	u := dial.ParseUsername(string(upr.User))
	st.req.User, st.req.Session, st.req.Country = u.Base, u.Session, u.Country
	if auth := a.s.cfg.Auth; auth != nil {
		account, err := auth.Authenticate(st.ctx, st.req.Client, u.Base, string(upr.Pass))
		if err != nil {
			st.fail(resultAuthFailed, err)
			_, _ = st.conn.Write([]byte{authVersion, authFailure})
			return nil, err
		}
		st.req.User = account
	}
	if _, err := st.conn.Write([]byte{authVersion, authSuccess}); err != nil {
		return nil, err
	}
	return &socks5.AuthContext{Method: statute.MethodUserPassAuth}, nil
}

// noAuth is method 0x00, "no authentication required"; unlike go-socks5's
// own it allocates no payload map per connection.
type noAuth struct{}

func (noAuth) GetCode() uint8 { return statute.MethodNoAuth }

func (noAuth) Authenticate(_ io.Reader, w io.Writer, _ string) (*socks5.AuthContext, error) {
	_, err := w.Write([]byte{socks5Version, statute.MethodNoAuth})
	return &socks5.AuthContext{Method: statute.MethodNoAuth}, err
}
