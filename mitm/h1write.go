package mitm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"golang.org/x/net/http/httpguts"
)

// errBadHeader: a request field that cannot go on the wire (a name that is
// no token, a value with CR, LF or NUL), which would split the request.
var errBadHeader = errors.New("invalid header field")

// errShortBody: a request body ended before its Content-Length.
var errShortBody = errors.New("request body shorter than its Content-Length")

// writeRequestH1 writes req as HTTP/1.1 to w in the order p's browser sends
// its fields (requestFields), then its body: exactly Content-Length bytes,
// or chunked with req.Trailer after it. net/http's Request.Write would sort
// the fields, which no browser does. It does not flush w.
func writeRequestH1(w *bufio.Writer, req *http.Request, p *Profile) error {
	if err := writeHeadH1(w, req, p); err != nil {
		return err
	}
	return writeBodyH1(w, req)
}

// writeHeadH1 writes the request line and header fields (buffered: the
// caller flushes). It fails before writing anything on a request hopper
// must not send.
func writeHeadH1(w *bufio.Writer, req *http.Request, p *Profile) error {
	fields := requestFields(req, p, false)
	if err := checkFields(fields); err != nil {
		return err
	}
	target := req.URL.RequestURI()
	if req.Method == http.MethodConnect {
		target = req.Host
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	if !httpguts.ValidHostHeader(req.Host) || !validMethod(method) || !printable(target) {
		return fmt.Errorf("%w: request line %s %q", errBadHeader, method, target)
	}
	_, _ = w.WriteString(method + " " + target + " HTTP/1.1\r\n")
	for _, f := range fields {
		_, _ = w.WriteString(f.name + ": " + f.value + "\r\n")
	}
	_, err := w.WriteString("\r\n")
	return err
}

// hasBody reports whether req sends a body.
func hasBody(req *http.Request) bool { return req.Body != nil && req.Body != http.NoBody }

// writeBodyH1 writes req's body after its head, streamed as it arrives
// (Content-Length or chunked, with trailers), if it has one.
func writeBodyH1(w *bufio.Writer, req *http.Request) error {
	if !hasBody(req) {
		return nil
	}
	if err := w.Flush(); err != nil { // the head goes out before the body is read
		return err
	}
	if n := bodyLength(req); n > 0 {
		return copyFlushing(w, req.Body, n, false)
	}
	if err := copyFlushing(w, req.Body, -1, true); err != nil {
		return err
	}
	_, _ = w.WriteString("0\r\n")
	var trailers []field
	for k, vs := range req.Trailer {
		for _, v := range vs {
			trailers = append(trailers, field{name: k, value: v})
		}
	}
	if err := checkFields(trailers); err != nil {
		return err
	}
	for _, f := range trailers {
		_, _ = w.WriteString(f.name + ": " + f.value + "\r\n")
	}
	_, err := w.WriteString("\r\n")
	return err
}

// copyFlushing copies body to w as it arrives, flushing after every read so
// that a streamed body reaches the origin as the client sends it: exactly n
// bytes (n >= 0), or everything in chunked coding (chunked, n < 0; the
// final chunk is the caller's).
func copyFlushing(w *bufio.Writer, body io.Reader, n int64, chunked bool) error {
	buf := make([]byte, 32<<10)
	var copied int64
	for n < 0 || copied < n {
		want := len(buf)
		if n >= 0 {
			want = int(min(int64(want), n-copied))
		}
		m, rerr := body.Read(buf[:want])
		if m > 0 {
			if chunked {
				_, _ = w.WriteString(strconv.FormatInt(int64(m), 16) + "\r\n")
			}
			_, _ = w.Write(buf[:m])
			if chunked {
				_, _ = w.WriteString("\r\n")
			}
			if err := w.Flush(); err != nil {
				return err
			}
			copied += int64(m)
		}
		if rerr == io.EOF {
			if n >= 0 && copied < n {
				return fmt.Errorf("%w: %d of %d bytes", errShortBody, copied, n)
			}
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
	return nil
}

func checkFields(fields []field) error {
	for _, f := range fields {
		if !httpguts.ValidHeaderFieldName(f.name) || !httpguts.ValidHeaderFieldValue(f.value) {
			return fmt.Errorf("%w: %q", errBadHeader, f.name)
		}
	}
	return nil
}

func validMethod(m string) bool {
	for i := 0; i < len(m); i++ {
		if !httpguts.IsTokenRune(rune(m[i])) {
			return false
		}
	}
	return m != ""
}

// printable reports whether a request target has no spaces or controls.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return s != ""
}
