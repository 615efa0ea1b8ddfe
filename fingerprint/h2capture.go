package fingerprint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/http2/hpack"
)

// ClientPreface is the fixed string an HTTP/2 client sends first (RFC 9113
// §3.4).
const ClientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// HTTP/2 frame types and flags the capture reads (RFC 9113 §6).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	framePriority     = 0x2
	frameSettings     = 0x4
	frameWindowUpdate = 0x8
	frameContinuation = 0x9

	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20
	flagAck        = 0x1

	frameHeaderLen = 9
	// maxCapturedFrame bounds a frame the capture buffers (every type but
	// DATA, which it skips); maxHeaderBlock a header block across
	// CONTINUATION frames.
	maxCapturedFrame = 256 << 10
	maxHeaderBlock   = 256 << 10
	// maxDynamicTable is the HPACK table size the capture accepts a client
	// using (a server may advertise up to this; x/net's advertises 4096).
	maxDynamicTable = 64 << 10
)

// ErrNotHTTP2 is why an HTTP2Capture stops when the bytes do not begin with
// the client preface or stop being HTTP/2 frames it can follow.
var ErrNotHTTP2 = errors.New("not an HTTP/2 client stream")

// HTTP2Capture watches the bytes an HTTP/2 client sends (write them to it
// as they are read, e.g. through Tee) and records the connection preface
// (Preface) and the head of every request (Claim). It never changes the
// bytes and never fails a Write; when it meets something it cannot follow
// it stops recording and Err says why. It is safe for concurrent use.
type HTTP2Capture struct {
	captureMu

	prefaceLeft int // bytes of ClientPreface still to match
	hdr         [frameHeaderLen]byte
	hdrN        int
	// The frame being read: its header, and either its payload so far or
	// the bytes of it still to skip.
	typ, flags byte
	stream     uint32
	length     int
	payload    []byte
	skip       int
	inFrame    bool

	dec        *hpack.Decoder
	block      []byte // header block so far (HEADERS then CONTINUATION)
	blockHead  RequestHead
	inBlock    bool
	preface    HTTP2
	sawHeaders bool // the preface is complete once the first HEADERS was
}

// NewHTTP2Capture returns a capture expecting the client preface first.
func NewHTTP2Capture() *HTTP2Capture {
	c := &HTTP2Capture{prefaceLeft: len(ClientPreface)}
	c.dec = hpack.NewDecoder(maxDynamicTable, nil)
	c.dec.SetMaxStringLength(maxHeaderBlock)
	return c
}

// Preface returns the client's HTTP/2 fingerprint; complete is false until
// the first request's HEADERS has arrived (before that the settings,
// window update and priorities seen so far are returned).
func (c *HTTP2Capture) Preface() (h HTTP2, complete bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.preface.Clone(), c.sawHeaders
}

// Write records p, the next bytes the client sent. It always returns
// len(p), nil.
func (c *HTTP2Capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(p)
	for len(p) > 0 && c.fail == nil {
		p = c.consume(p)
	}
	return n, nil
}

func (c *HTTP2Capture) stop(err error) { c.fail = err }

// consume takes what it can of p and returns the rest.
func (c *HTTP2Capture) consume(p []byte) []byte {
	if c.prefaceLeft > 0 {
		i := len(ClientPreface) - c.prefaceLeft
		n := min(c.prefaceLeft, len(p))
		if string(p[:n]) != ClientPreface[i:i+n] {
			c.stop(fmt.Errorf("%w: no client preface", ErrNotHTTP2))
			return nil
		}
		c.prefaceLeft -= n
		return p[n:]
	}
	if !c.inFrame {
		n := copy(c.hdr[c.hdrN:], p)
		c.hdrN += n
		p = p[n:]
		if c.hdrN < frameHeaderLen {
			return p
		}
		c.hdrN = 0
		c.length = int(c.hdr[0])<<16 | int(c.hdr[1])<<8 | int(c.hdr[2])
		c.typ, c.flags = c.hdr[3], c.hdr[4]
		c.stream = binary.BigEndian.Uint32(c.hdr[5:9]) & 0x7fffffff
		c.inFrame = true
		c.payload = c.payload[:0]
		c.skip = 0
		if c.typ == frameData || (c.typ > frameContinuation && !c.inBlock) {
			c.skip = c.length // bodies and unknown frames are not recorded
		} else if c.length > maxCapturedFrame {
			c.stop(fmt.Errorf("%w: %d-byte frame of type %d", ErrNotHTTP2, c.length, c.typ))
			return nil
		}
		if c.length == 0 {
			c.endFrame()
		}
		return p
	}
	if c.skip > 0 {
		n := min(c.skip, len(p))
		c.skip -= n
		if c.skip == 0 {
			c.inFrame = false
		}
		return p[n:]
	}
	n := min(c.length-len(c.payload), len(p))
	c.payload = append(c.payload, p[:n]...)
	if len(c.payload) == c.length {
		c.endFrame()
	}
	return p[n:]
}

// endFrame handles the frame whose payload is complete.
func (c *HTTP2Capture) endFrame() {
	c.inFrame = false
	if c.skip > 0 || c.typ == frameData {
		return
	}
	if c.inBlock && c.typ != frameContinuation {
		c.stop(fmt.Errorf("%w: frame type %d inside a header block", ErrNotHTTP2, c.typ))
		return
	}
	p := c.payload
	switch c.typ {
	case frameSettings:
		if c.flags&flagAck != 0 || c.sawHeaders || c.preface.Settings != nil {
			return
		}
		if len(p)%6 != 0 {
			c.stop(fmt.Errorf("%w: SETTINGS length %d", ErrNotHTTP2, len(p)))
			return
		}
		c.preface.Settings = make([]Setting, 0, len(p)/6)
		for i := 0; i < len(p); i += 6 {
			c.preface.Settings = append(c.preface.Settings,
				Setting{ID: binary.BigEndian.Uint16(p[i:]), Value: binary.BigEndian.Uint32(p[i+2:])})
		}
	case frameWindowUpdate:
		if c.stream == 0 && !c.sawHeaders && c.preface.WindowUpdate == 0 && len(p) == 4 {
			c.preface.WindowUpdate = binary.BigEndian.Uint32(p) & 0x7fffffff
		}
	case framePriority:
		if !c.sawHeaders && len(p) == 5 {
			c.preface.Priorities = append(c.preface.Priorities, readPriority(c.stream, p))
		}
	case frameHeaders:
		c.startBlock(p)
	case frameContinuation:
		if !c.inBlock || c.stream != c.blockHead.StreamID {
			c.stop(fmt.Errorf("%w: stray CONTINUATION", ErrNotHTTP2))
			return
		}
		c.addFragment(p)
	}
}

func readPriority(stream uint32, p []byte) Priority {
	dep := binary.BigEndian.Uint32(p)
	return Priority{StreamID: stream, Exclusive: dep&0x80000000 != 0, DependsOn: dep & 0x7fffffff, Weight: p[4]}
}

func (c *HTTP2Capture) startBlock(p []byte) {
	pad := 0
	if c.flags&flagPadded != 0 {
		if len(p) < 1 {
			c.stop(fmt.Errorf("%w: short padded HEADERS", ErrNotHTTP2))
			return
		}
		pad = int(p[0])
		p = p[1:]
	}
	c.blockHead = RequestHead{StreamID: c.stream}
	if c.flags&flagPriority != 0 {
		if len(p) < 5 {
			c.stop(fmt.Errorf("%w: short HEADERS priority", ErrNotHTTP2))
			return
		}
		pr := readPriority(c.stream, p)
		c.blockHead.Priority = &pr
		p = p[5:]
	}
	if pad > len(p) {
		c.stop(fmt.Errorf("%w: HEADERS padding longer than the frame", ErrNotHTTP2))
		return
	}
	c.inBlock = true
	c.block = c.block[:0]
	c.addFragment(p[:len(p)-pad])
}

func (c *HTTP2Capture) addFragment(p []byte) {
	if len(c.block)+len(p) > maxHeaderBlock {
		c.stop(fmt.Errorf("%w: header block over %d bytes", ErrNotHTTP2, maxHeaderBlock))
		return
	}
	c.block = append(c.block, p...)
	if c.flags&flagEndHeaders == 0 {
		return
	}
	c.inBlock = false
	fields, err := c.dec.DecodeFull(c.block)
	if err != nil {
		c.stop(fmt.Errorf("%w: HPACK: %w", ErrNotHTTP2, err))
		return
	}
	h := c.blockHead
	for _, f := range fields {
		if strings.HasPrefix(f.Name, ":") {
			h.Pseudo = append(h.Pseudo, f.Name)
			switch f.Name {
			case ":method":
				h.Method = f.Value
			case ":path":
				h.Target = f.Value
			}
			continue
		}
		h.Fields = append(h.Fields, Field{Name: f.Name, Value: f.Value})
	}
	if len(h.Pseudo) == 0 {
		return // trailers
	}
	if !c.sawHeaders {
		c.sawHeaders = true
		c.preface.PseudoHeaderOrder = append([]string(nil), h.Pseudo...)
		c.preface.FirstStreamID = h.StreamID
		if h.Priority != nil {
			pr := *h.Priority
			c.preface.HeadersPriority = &pr
		}
	}
	c.log.add(h)
}
