package rotate

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/hopper-proxy/hopper/dial"
)

// maxReplyHead bounds the status line and headers of an upstream's reply.
const maxReplyHead = 16 << 10

var replyReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

// connectHTTP asks the HTTP proxy at the other end of c for a tunnel to
// target (RFC 9110 §9.3.6), sending auth as Proxy-Authorization when set.
// It writes the request and reads the reply in the calling goroutine,
// bounded by ctx through c's deadlines. On a 2xx reply it returns c itself,
// or, when the proxy sent bytes past its reply, a conn that returns them
// first. It does not close c.
func connectHTTP(ctx context.Context, c net.Conn, target, auth string) (net.Conn, error) {
	req := make([]byte, 0, 64+2*len(target)+len(auth))
	req = append(req, "CONNECT "...)
	req = append(req, target...)
	req = append(req, " HTTP/1.1\r\nHost: "...)
	req = append(req, target...)
	if auth != "" {
		req = append(req, "\r\nProxy-Authorization: "...)
		req = append(req, auth...)
	}
	req = append(req, "\r\n\r\n"...)

	br := replyReaders.Get().(*bufio.Reader)
	br.Reset(c)
	defer func() {
		br.Reset(nil)
		replyReaders.Put(br)
	}()
	var rep reply
	err := withDeadline(ctx, c, func() error {
		if _, err := c.Write(req); err != nil {
			return err
		}
		var err error
		rep, err = readReply(br)
		return err
	})
	if err != nil {
		var pe *ProxyError
		if errors.As(err, &pe) {
			return nil, err
		}
		return nil, proxyFailure("handshake", err)
	}
	if err := rep.err(); err != nil {
		return nil, err
	}
	pending, _ := br.Peek(br.Buffered())
	return newReplayConn(c, pending), nil
}

// reply is the part of an HTTP proxy's answer we act on.
type reply struct {
	code   int
	status string // reason phrase, sanitised
	hopper string // Hopper-Error header
	squid  string // X-Squid-Error header
}

// readReply reads a status line and headers, skipping 1xx interim replies.
// It leaves any following bytes (a body, or tunnel data) in br.
func readReply(br *bufio.Reader) (reply, error) {
	budget := maxReplyHead
	for interim := 0; ; interim++ {
		rep, err := readOneReply(br, &budget)
		if err != nil || rep.code >= 200 || interim == 4 {
			return rep, err
		}
	}
}

func readOneReply(br *bufio.Reader, budget *int) (reply, error) {
	var rep reply
	line, err := readHeadLine(br, budget)
	if err != nil {
		return rep, err
	}
	code, status, ok := parseStatusLine(line)
	if !ok {
		return rep, &ProxyError{Op: "reply", Reason: "malformed status line", Err: dial.ErrUpstream}
	}
	rep.code, rep.status = code, status
	for {
		line, err := readHeadLine(br, budget)
		if err != nil {
			return rep, err
		}
		if len(line) == 0 {
			return rep, nil
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		switch {
		case asciiEqualFold(name, "Hopper-Error"):
			rep.hopper = sanitize(string(bytes.TrimSpace(value)))
		case asciiEqualFold(name, "X-Squid-Error"):
			rep.squid = sanitize(string(bytes.TrimSpace(value)))
		}
	}
}

// readHeadLine returns one line without its CRLF (or LF), charging budget.
func readHeadLine(br *bufio.Reader, budget *int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	*budget -= len(line)
	switch {
	case err == bufio.ErrBufferFull || *budget < 0:
		return nil, &ProxyError{Op: "reply", Reason: "reply head too large", Err: dial.ErrUpstream}
	case err == io.EOF:
		return nil, io.ErrUnexpectedEOF
	case err != nil:
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// parseStatusLine reads "HTTP/1.x NNN reason".
func parseStatusLine(line []byte) (code int, status string, ok bool) {
	rest, found := bytes.CutPrefix(line, []byte("HTTP/1."))
	if !found || len(rest) < 5 || rest[0] < '0' || rest[0] > '9' || rest[1] != ' ' {
		return 0, "", false
	}
	digits := rest[2:5]
	if len(rest) > 5 && rest[5] != ' ' {
		return 0, "", false
	}
	n, err := strconv.Atoi(string(digits))
	if err != nil || n < 100 || n > 999 || digits[0] == '+' || digits[0] == '-' {
		return 0, "", false
	}
	if len(rest) > 6 {
		status = sanitize(string(rest[6:]))
	}
	return n, status, true
}

// err maps a non-2xx reply to a *ProxyError; nil for success.
func (r reply) err() error {
	if r.code >= 200 && r.code < 300 {
		return nil
	}
	pe := &ProxyError{Op: "reply", Code: r.code, Reason: r.status, Err: dial.ErrUpstream}
	if hint := firstNonEmpty(r.hopper, r.squid); hint != "" {
		pe.Reason = strings.TrimSpace(r.status + " (" + hint + ")")
	}
	switch {
	case r.code == 407:
		pe.Err = ErrProxyAuth
	case r.code >= 500 || r.code == 403:
		if target := targetHint(r); target != nil {
			pe.Err = target
		} else if r.code == 504 {
			pe.Err = dial.ErrTimeout
		}
	}
	return pe
}

// targetHint reads what a proxy says about the target in its error headers:
// hopper's own Hopper-Error (a dial.Kind name) and squid's X-Squid-Error.
func targetHint(r reply) error {
	switch strings.ToLower(r.hopper) {
	case "refused":
		return dial.ErrTargetRefused
	case "unreachable":
		return dial.ErrTargetUnreachable
	case "timeout":
		return dial.ErrTimeout
	case "denied":
		return dial.ErrDenied
	}
	code, detail, _ := strings.Cut(r.squid, " ")
	switch code {
	case "ERR_DNS_FAIL":
		return dial.ErrTargetUnreachable
	case "ERR_ACCESS_DENIED":
		return dial.ErrDenied
	case "ERR_READ_TIMEOUT", "ERR_LIFETIME_EXP":
		return dial.ErrTimeout
	case "ERR_CONNECT_FAIL":
		switch detail { // errno squid saw when connecting to the target
		case "111":
			return dial.ErrTargetRefused
		case "101", "113":
			return dial.ErrTargetUnreachable
		case "110":
			return dial.ErrTimeout
		}
	}
	return nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// sanitize keeps printable ASCII and at most 80 bytes of text an upstream
// sent, so that it is safe in logs.
func sanitize(s string) string {
	b := make([]byte, 0, min(len(s), 80))
	for i := 0; i < len(s) && len(b) < 80; i++ {
		if c := s[i]; c >= ' ' && c < 0x7f {
			b = append(b, c)
		}
	}
	return string(b)
}

// errBadTarget: the request's target is not a usable host:port. It is the
// caller's fault and is not retried.
var errBadTarget = errors.New("bad target address")

func checkTarget(target string) error {
	host, port, err := net.SplitHostPort(target)
	if err != nil || host == "" || port == "" || strings.ContainsAny(target, " \t\r\n") {
		return fmt.Errorf("%w %q", errBadTarget, truncate(target, 300))
	}
	return nil
}
