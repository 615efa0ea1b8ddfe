package tunnel

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
)

// bodyKind is how a message body is delimited (RFC 9112 §6.3).
type bodyKind uint8

const (
	bodyNone    bodyKind = iota
	bodyLength           // Content-Length bytes
	bodyChunked          // chunked transfer coding, passed through verbatim
	bodyClose            // until the sender closes (responses only)
)

// framing says where a message body ends.
type framing struct {
	kind bodyKind
	n    int64 // for bodyLength
}

// reqInfo is what the forward path needs to know about a request head.
type reqInfo struct {
	body           framing
	close          bool // the client wants the connection closed after this exchange
	websocket      bool // a WebSocket upgrade (RFC 6455 §4.1)
	expectContinue bool
}

// analyzeRequest derives a request's framing and connection options from its
// head. Ambiguous framing is refused (RFC 9112 §6.1, §6.3): Transfer-Encoding
// together with Content-Length, a coding other than a final chunked, or
// conflicting lengths.
func analyzeRequest(h *head) (reqInfo, error) {
	var info reqInfo
	te, cl, err := framingFields(h, errBadRequest)
	if err != nil {
		return info, err
	}
	switch {
	case te != nil && cl >= 0:
		return info, fmt.Errorf("%w: both Transfer-Encoding and Content-Length", errBadRequest)
	case te != nil:
		if !lastTokenIs(te, "chunked") {
			return info, fmt.Errorf("%w: unsupported Transfer-Encoding", errBadRequest)
		}
		info.body = framing{kind: bodyChunked}
	case cl > 0:
		info.body = framing{kind: bodyLength, n: cl}
	}
	keepAlive := false
	for i := range h.fields {
		f := &h.fields[i]
		switch {
		case equalFold(f.name, "Connection"):
			info.close = info.close || listHas(f.value, "close")
			keepAlive = keepAlive || listHas(f.value, "keep-alive")
		case equalFold(f.name, "Upgrade"):
			info.websocket = listHas(f.value, "websocket")
		case equalFold(f.name, "Expect"):
			info.expectContinue = equalFold(f.value, "100-continue")
		}
	}
	info.websocket = info.websocket && h.hasToken("Connection", "upgrade") && info.body.kind == bodyNone
	if h.minor == 0 && !keepAlive {
		info.close = true
	}
	return info, nil
}

// respInfo is what the forward path needs to know about a response head.
type respInfo struct {
	body framing
	// close: the origin connection cannot carry another request.
	close     bool
	websocket bool
}

// analyzeResponse derives a response's framing. Responses to HEAD, 1xx, 204
// and 304 have no body; a Transfer-Encoding without a final chunked, or
// neither header, means the body runs until the origin closes.
func analyzeResponse(h *head, headReq bool) (respInfo, error) {
	var info respInfo
	te, cl, err := framingFields(h, errBadResponse)
	if err != nil {
		return info, err
	}
	switch {
	case headReq || h.status < 200 || h.status == 204 || h.status == 304:
	case te != nil && lastTokenIs(te, "chunked"):
		info.body = framing{kind: bodyChunked}
	case te != nil:
		info.body = framing{kind: bodyClose}
	case cl >= 0:
		info.body = framing{kind: bodyLength, n: cl}
	default:
		info.body = framing{kind: bodyClose}
	}
	keepAlive := false
	for i := range h.fields {
		f := &h.fields[i]
		switch {
		case equalFold(f.name, "Connection"):
			info.close = info.close || listHas(f.value, "close")
			keepAlive = keepAlive || listHas(f.value, "keep-alive")
		case equalFold(f.name, "Upgrade"):
			info.websocket = listHas(f.value, "websocket")
		}
	}
	if h.minor == 0 && !keepAlive || info.body.kind == bodyClose {
		info.close = true
	}
	return info, nil
}

// framingFields returns the last Transfer-Encoding value (nil if absent) and
// the Content-Length (-1 if absent); repeated Content-Length fields must
// agree.
func framingFields(h *head, kind error) (te []byte, cl int64, err error) {
	cl = -1
	for i := range h.fields {
		f := &h.fields[i]
		switch {
		case equalFold(f.name, "Transfer-Encoding"):
			te = f.value
		case equalFold(f.name, "Content-Length"):
			n, ok := parseLength(f.value)
			if !ok || (cl >= 0 && n != cl) {
				return nil, 0, fmt.Errorf("%w: invalid Content-Length", kind)
			}
			cl = n
		}
	}
	return te, cl, nil
}

// parseLength parses a non-negative decimal of at most 18 digits.
func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func lastTokenIs(list []byte, token string) bool {
	if i := bytes.LastIndexByte(list, ','); i >= 0 {
		list = list[i+1:]
	}
	return equalFold(trimOWS(list), token)
}

// absURI is an absolute-form request target (RFC 9112 §3.2.2).
type absURI struct {
	authority []byte // host[:port], userinfo dropped; the Host to send
	path      []byte // origin-form: absolute path and query, never empty
	noPath    bool   // the URI had no path ("http://host")
	target    string // host:port to dial
}

// parseAbsoluteURI parses an http:// request target. Origin-form targets
// ("/path") and https:// are bad requests with a hint. tc, if set, caches
// the dial target across calls.
func parseAbsoluteURI(t []byte, tc *targetCache) (absURI, error) {
	var u absURI
	const scheme = "http://"
	if !hasPrefixFold(t, scheme) {
		if hasPrefixFold(t, "https://") {
			return u, errHTTPSURI
		}
		return u, errOriginForm
	}
	rest := t[len(scheme):]
	end := bytes.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	u.authority, rest = rest[:end], rest[end:]
	if i := bytes.LastIndexByte(u.authority, '@'); i >= 0 {
		u.authority = u.authority[i+1:]
	}
	if i := bytes.IndexByte(rest, '#'); i >= 0 {
		rest = rest[:i]
	}
	switch {
	case len(rest) == 0:
		rest, u.noPath = []byte("/"), true
	case rest[0] == '?':
		rest = append([]byte("/"), rest...)
	}
	u.path = rest
	var target string
	var err error
	if tc != nil {
		target, err = tc.hostPort(u.authority)
	} else {
		target, err = hostPort(u.authority, "80")
	}
	if err != nil {
		return u, err
	}
	u.target = target
	return u, nil
}

// parseAuthority parses a CONNECT target (authority-form, port required).
func parseAuthority(t []byte) (string, error) {
	return hostPort(t, "")
}

// hostPort validates host[:port] (IPv6 in brackets) and returns it as
// host:port for dialing, using defPort when the port is absent ("" makes the
// port required).
func hostPort(a []byte, defPort string) (string, error) {
	var host, port []byte
	if len(a) > 0 && a[0] == '[' {
		end := bytes.IndexByte(a, ']')
		if end < 0 {
			return "", fmt.Errorf("%w: bad IPv6 host", errBadRequest)
		}
		host, a = a[1:end], a[end+1:]
		if net.ParseIP(string(host)) == nil {
			return "", fmt.Errorf("%w: bad IPv6 host", errBadRequest)
		}
		if len(a) > 0 {
			if a[0] != ':' {
				return "", fmt.Errorf("%w: bad authority", errBadRequest)
			}
			port = a[1:]
		}
	} else {
		host = a
		if i := bytes.IndexByte(a, ':'); i >= 0 {
			host, port = a[:i], a[i+1:]
		}
		for _, c := range host {
			if !isHostChar(c) {
				return "", fmt.Errorf("%w: bad host", errBadRequest)
			}
		}
	}
	if len(host) == 0 {
		return "", fmt.Errorf("%w: missing host", errBadRequest)
	}
	if len(port) == 0 {
		if defPort == "" {
			return "", fmt.Errorf("%w: missing port (CONNECT needs host:port)", errBadRequest)
		}
		port = []byte(defPort)
	}
	if p, err := strconv.ParseUint(string(port), 10, 16); err != nil || p == 0 {
		return "", fmt.Errorf("%w: bad port", errBadRequest)
	}
	return net.JoinHostPort(string(host), string(port)), nil
}

// isHostChar allows reg-name and IPv4 characters (RFC 3986 §3.2.2) minus
// those that would change the meaning of a host:port string.
func isHostChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '_', '~', '%', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=':
		return true
	}
	return false
}
