package mitm

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/hopper-proxy/hopper/fingerprint"
)

// field is one header field as it goes on the wire.
type field struct{ name, value string }

// clientHeadKey carries, in a request's context, the head of the client's
// own request as hopper read it off the wire (mirror mode): its header
// order and spelling, and over HTTP/2 its pseudo-header order and priority.
type clientHeadKey struct{}

func withClientHead(ctx context.Context, h *fingerprint.RequestHead) context.Context {
	return context.WithValue(ctx, clientHeadKey{}, h)
}

func clientHeadFrom(ctx context.Context) *fingerprint.RequestHead {
	h, _ := ctx.Value(clientHeadKey{}).(*fingerprint.RequestHead)
	return h
}

// isNavigation reports whether a request is a top-level navigation, which
// a browser orders differently from a fetch: its Sec-Fetch-Mode says so, or
// without one, it is a GET or HEAD (what a user typing a URL sends).
func isNavigation(h http.Header, method string) bool {
	if m := h.Get("Sec-Fetch-Mode"); m != "" {
		return strings.EqualFold(m, "navigate")
	}
	return method == http.MethodGet || method == http.MethodHead || method == ""
}

// bodyLength says how the request's body is framed: its length when known
// (0 for none), -1 when it must be streamed without one.
func bodyLength(req *http.Request) int64 {
	if req.Body == nil || req.Body == http.NoBody {
		return 0
	}
	if req.ContentLength > 0 {
		return req.ContentLength
	}
	return -1
}

// needsLength reports whether a request without a body still says
// Content-Length: 0, as browsers do for an empty POST.
func needsLength(method string) bool {
	return method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch
}

// h2Forbidden reports whether HTTP/2 forbids a field (RFC 9113 §8.2.2):
// connection-specific ones, and TE other than "trailers".
func h2Forbidden(lower string, values []string) bool {
	switch lower {
	case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade", "host":
		return true
	case "te":
		return len(values) != 1 || !strings.EqualFold(strings.TrimSpace(values[0]), "trailers")
	}
	return false
}

// requestFields returns req's header fields in the order p's browser sends
// them, over HTTP/2 (h2) or HTTP/1.1:
//
//   - the fields p's order lists come in that order (the navigation order
//     or the fetch order, by isNavigation);
//   - fields it does not list go where it has "*" (else last), in the
//     order the client sent them when hopper saw it (mirror mode), else
//     sorted;
//   - over HTTP/1.1 Host and Connection are added (keep-alive, close, or
//     the request's own Connection for an upgrade), spelled as p spells
//     them, else as the client did, else canonically; over HTTP/2 names are
//     lower case and connection-specific fields are dropped;
//   - Content-Length (or, over HTTP/1.1, Transfer-Encoding: chunked) comes
//     from the request's body, never from its Header.
func requestFields(req *http.Request, p *Profile, h2 bool) []field {
	type entry struct {
		name   string
		values []string
	}
	byName := make(map[string]*entry, len(req.Header)+3)
	add := func(name string, values ...string) {
		l := strings.ToLower(name)
		e := byName[l]
		if e == nil {
			e = &entry{name: name}
			byName[l] = e
		}
		e.values = append(e.values, values...)
	}
	for k, vs := range req.Header {
		l := strings.ToLower(k)
		switch {
		case l == "host" || l == "content-length" || l == "transfer-encoding":
			continue
		case h2 && h2Forbidden(l, vs), !h2 && l == "connection":
			continue
		}
		add(k, vs...)
	}
	n := bodyLength(req)
	switch {
	case n > 0:
		add("Content-Length", strconv.FormatInt(n, 10))
	case n == 0 && needsLength(req.Method):
		add("Content-Length", "0")
	case n < 0 && !h2:
		add("Transfer-Encoding", "chunked")
	}
	if len(req.Trailer) > 0 && n != 0 && (h2 || n < 0) {
		keys := make([]string, 0, len(req.Trailer))
		for k := range req.Trailer {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		add("Trailer", strings.Join(keys, ", "))
	}
	if !h2 {
		host := req.Host
		if host == "" {
			host = req.URL.Host
		}
		add("Host", host)
		conn := "keep-alive"
		if v := req.Header.Get("Connection"); v != "" {
			conn = v
		} else if req.Close {
			conn = "close"
		}
		add("Connection", conn)
	}

	head := clientHeadFrom(req.Context())
	clientH2 := head != nil && len(head.Pseudo) > 0
	var clientNames []string
	spelled := make(map[string]string)
	if head != nil {
		for _, f := range head.Fields {
			l := strings.ToLower(f.Name)
			if _, ok := spelled[l]; !ok {
				spelled[l] = f.Name
				clientNames = append(clientNames, l)
			}
		}
	}
	spell := func(l string, e *entry) string {
		if h2 {
			return l
		}
		for _, ph := range p.Headers {
			if strings.EqualFold(ph.Name, l) {
				return ph.Name
			}
		}
		if s, ok := spelled[l]; ok && !clientH2 {
			return s
		}
		if clientH2 && strings.HasPrefix(l, "sec-ch-") {
			return l // a client that spoke HTTP/2 spelled nothing; Chromium sends its hints in lower case
		}
		return e.name
	}

	order := p.HeaderOrder
	if p.FetchHeaderOrder != nil && !isNavigation(req.Header, req.Method) {
		order = p.FetchHeaderOrder
	}
	listed := make(map[string]bool, len(order))
	for _, l := range order {
		listed[l] = true
	}
	out := make([]field, 0, len(byName)+4)
	emitted := make(map[string]bool, len(byName))
	emit := func(l string) {
		e := byName[l]
		if e == nil || emitted[l] {
			return
		}
		emitted[l] = true
		name := spell(l, e)
		for _, v := range e.values {
			out = append(out, field{name: name, value: v})
		}
	}
	unlisted := func() {
		for _, l := range clientNames {
			if !listed[l] {
				emit(l)
			}
		}
		var rest []string
		for l := range byName {
			if !listed[l] && !emitted[l] {
				rest = append(rest, l)
			}
		}
		slices.Sort(rest)
		for _, l := range rest {
			emit(l)
		}
	}
	if !h2 && !listed["host"] {
		emit("host") // HTTP/1.1 puts Host first unless the order says otherwise
	}
	star := false
	for _, l := range order {
		if l == "*" {
			unlisted()
			star = true
			continue
		}
		emit(l)
	}
	if !star {
		unlisted()
	}
	return out
}
