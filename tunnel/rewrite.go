package tunnel

import (
	"strconv"
)

// appendRequestHead renders the head sent on for a forward request: the
// request line in origin-form (absolute-form when talking to an upstream HTTP
// proxy), Host from the request target (RFC 9112 §3.2.2), every end-to-end
// field as received, and no hop-by-hop, Proxy-* or Hopper-* field. No Via or
// X-Forwarded-For is added.
func appendRequestHead(dst []byte, h *head, u *absURI, info *reqInfo, absolute bool, proxyAuth string) []byte {
	dst = append(dst, h.method...)
	dst = append(dst, ' ')
	switch {
	case absolute:
		dst = append(dst, "http://"...)
		dst = append(dst, u.authority...)
		dst = append(dst, u.path...)
	case u.noPath && string(h.method) == "OPTIONS":
		dst = append(dst, '*')
	default:
		dst = append(dst, u.path...)
	}
	if h.minor == 0 {
		dst = append(dst, " HTTP/1.0\r\nHost: "...)
	} else {
		dst = append(dst, " HTTP/1.1\r\nHost: "...)
	}
	dst = append(dst, u.authority...)
	dst = append(dst, "\r\n"...)
	for i := range h.fields {
		f := &h.fields[i]
		if dropRequestField(h, f.name, info.websocket) {
			continue
		}
		dst = appendField(dst, f)
	}
	if info.websocket {
		dst = append(dst, "Connection: Upgrade\r\n"...)
	}
	if proxyAuth != "" {
		dst = append(dst, "Proxy-Authorization: "...)
		dst = append(dst, proxyAuth...)
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// appendResponseHead renders an origin's response head for the client,
// without hop-by-hop fields. websocket keeps Upgrade for a 101; closeConn
// adds "Connection: close" (for HTTP/1.1 clients, who would otherwise keep
// the connection).
func appendResponseHead(dst []byte, h *head, websocket, closeConn bool) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(h.status), 10)
	dst = append(dst, ' ')
	dst = append(dst, h.reason...)
	dst = append(dst, "\r\n"...)
	dropLength := h.get("Transfer-Encoding") != nil
	for i := range h.fields {
		f := &h.fields[i]
		if dropResponseField(h, f.name, websocket) || (dropLength && equalFold(f.name, "Content-Length")) {
			continue
		}
		dst = appendField(dst, f)
	}
	switch {
	case websocket:
		dst = append(dst, "Connection: Upgrade\r\n"...)
	case closeConn:
		dst = append(dst, "Connection: close\r\n"...)
	}
	return append(dst, "\r\n"...)
}

func appendField(dst []byte, f *field) []byte {
	dst = append(dst, f.name...)
	dst = append(dst, ": "...)
	dst = append(dst, f.value...)
	return append(dst, "\r\n"...)
}

// dropRequestField reports whether a request field must not leave hopper:
// hop-by-hop fields (RFC 9110 §7.6.1) and those Connection lists, Host (sent
// from the target instead), and every Proxy-* and Hopper-* field. Upgrade
// survives for a WebSocket handshake.
func dropRequestField(h *head, name []byte, websocket bool) bool {
	switch {
	case hasPrefixFold(name, "Proxy-"), hasPrefixFold(name, "Hopper-"):
		return true
	case equalFold(name, "Upgrade"):
		return !websocket
	case isHopByHop(name), equalFold(name, "Host"):
		return true
	}
	return listedInConnection(h, name)
}

// dropResponseField reports whether a response field must not reach the
// client: hop-by-hop fields, those Connection lists, and Proxy-* (an
// origin's Proxy-Authenticate would be taken as hopper's own challenge).
func dropResponseField(h *head, name []byte, websocket bool) bool {
	switch {
	case hasPrefixFold(name, "Proxy-"):
		return true
	case equalFold(name, "Upgrade"):
		return !websocket
	case isHopByHop(name):
		return true
	}
	return listedInConnection(h, name)
}

func isHopByHop(name []byte) bool {
	return equalFold(name, "Connection") || equalFold(name, "Keep-Alive") ||
		equalFold(name, "TE") || equalFold(name, "Trailer")
}

// listedInConnection reports whether a Connection field of h names name.
func listedInConnection(h *head, name []byte) bool {
	for i := range h.fields {
		f := &h.fields[i]
		if !equalFold(f.name, "Connection") {
			continue
		}
		v := f.value
		for len(v) > 0 {
			var item []byte
			item, v = cutComma(v)
			if equalFoldBytes(trimOWS(item), name) {
				return true
			}
		}
	}
	return false
}

func cutComma(v []byte) (item, rest []byte) {
	for i, c := range v {
		if c == ',' {
			return v[:i], v[i+1:]
		}
	}
	return v, nil
}

func equalFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}
