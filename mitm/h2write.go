package mitm

import (
	"net/http"
	"strings"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/hopper-proxy/hopper/fingerprint"
)

// The write side of h2Conn: every frame goes out under wmu, header blocks
// encoded with the connection's one HPACK encoder in stream order.

// pseudoHeaders are req's pseudo-header fields in the profile's order (or,
// in mirror mode, the client's own request's).
func (cc *h2Conn) pseudoHeaders(req *http.Request) []field {
	order := cc.pre.PseudoHeaderOrder
	if head := clientHeadFrom(req.Context()); head != nil && len(head.Pseudo) > 0 {
		order = head.Pseudo
	}
	if len(order) == 0 {
		order = []string{":method", ":authority", ":scheme", ":path"}
	}
	authority := req.Host
	if authority == "" {
		authority = req.URL.Host
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	path := req.URL.RequestURI()
	values := map[string]string{":method": method, ":authority": authority, ":scheme": "https", ":path": path}
	if method == http.MethodConnect {
		values = map[string]string{":method": method, ":authority": authority}
	}
	out := make([]field, 0, 4)
	seen := make(map[string]bool, 4)
	for _, name := range order {
		if v, ok := values[name]; ok && !seen[name] {
			out = append(out, field{name: name, value: v})
			seen[name] = true
		}
	}
	for _, name := range []string{":method", ":authority", ":scheme", ":path"} {
		if v, ok := values[name]; ok && !seen[name] {
			out = append(out, field{name: name, value: v})
		}
	}
	return out
}

// writeHeaders encodes and writes one HEADERS frame (and CONTINUATIONs) for
// stream id. The caller holds wmu (openStream took it); it is released.
func (cc *h2Conn) writeHeaders(id uint32, pseudo, fields []field, prio *fingerprint.Priority, endStream bool) error {
	defer cc.wmu.Unlock()
	cc.hbuf.Reset()
	for _, f := range pseudo {
		if err := cc.henc.WriteField(hpack.HeaderField{Name: f.name, Value: f.value}); err != nil {
			return err
		}
	}
	for _, f := range fields {
		if err := cc.henc.WriteField(hpack.HeaderField{Name: strings.ToLower(f.name), Value: f.value}); err != nil {
			return err
		}
	}
	return cc.writeBlockLocked(id, cc.hbuf.Bytes(), prio, endStream)
}

// writeBlockLocked splits a header block into HEADERS and CONTINUATION
// frames of the origin's maximum frame size and flushes. wmu is held.
func (cc *h2Conn) writeBlockLocked(id uint32, block []byte, prio *fingerprint.Priority, endStream bool) error {
	cc.mu.Lock()
	max := int(cc.peerMaxFrame)
	cc.mu.Unlock()
	first := true
	for first || len(block) > 0 {
		n := min(len(block), max)
		if first && prio != nil {
			n = min(len(block), max-5) // the priority fields share the frame
		}
		chunk := block[:n]
		block = block[n:]
		var err error
		if first {
			p := http2.HeadersFrameParam{StreamID: id, BlockFragment: chunk, EndStream: endStream, EndHeaders: len(block) == 0}
			if prio != nil {
				p.Priority = priorityParam(*prio)
			}
			err = cc.fr.WriteHeaders(p)
			first = false
		} else {
			err = cc.fr.WriteContinuation(id, len(block) == 0, chunk)
		}
		if err != nil {
			return err
		}
	}
	return cc.bw.Flush()
}

// writeFrame runs one frame write (and flush) under wmu.
func (cc *h2Conn) writeFrame(write func(fr *http2.Framer) error) error {
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	if err := write(cc.fr); err != nil {
		return err
	}
	return cc.bw.Flush()
}

// writeAsync writes a control frame the reader decided on (an ACK, a
// RST_STREAM, a WINDOW_UPDATE); a failure fails the connection.
func (cc *h2Conn) writeAsync(write func(fr *http2.Framer) error) {
	if err := cc.writeFrame(write); err != nil {
		cc.fail(err)
	}
}
