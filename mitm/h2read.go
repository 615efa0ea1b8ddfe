package mitm

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"
)

// readLoop reads the origin's frames until the connection ends. It is the
// one goroutine an h2Conn starts; Close waits for it.
func (cc *h2Conn) readLoop() {
	defer close(cc.readerDone)
	for {
		if cc.idle > 0 {
			_ = cc.conn.SetReadDeadline(time.Now().Add(cc.idle))
		}
		f, err := cc.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				cc.resetStream(se.StreamID, se.Code, err)
				continue
			}
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				cc.goAwayAndFail(http2.ErrCode(ce), err)
				return
			}
			cc.fail(fmt.Errorf("reading from the origin: %w", err))
			return
		}
		if err := cc.handleFrame(f); err != nil {
			var ce http2.ConnectionError
			code := http2.ErrCodeProtocol
			if errors.As(err, &ce) {
				code = http2.ErrCode(ce)
			}
			cc.goAwayAndFail(code, err)
			return
		}
	}
}

// goAwayAndFail tells the origin why the connection ends, then ends it.
func (cc *h2Conn) goAwayAndFail(code http2.ErrCode, err error) {
	_ = cc.writeFrame(func(fr *http2.Framer) error { return fr.WriteGoAway(0, code, nil) })
	cc.fail(err)
}

// resetStream ends stream id with an error of ours and tells the origin.
func (cc *h2Conn) resetStream(id uint32, code http2.ErrCode, err error) {
	cc.mu.Lock()
	if s := cc.streams[id]; s != nil {
		s.endLocked(err)
	}
	cc.mu.Unlock()
	cc.writeAsync(func(fr *http2.Framer) error { return fr.WriteRSTStream(id, code) })
}

// handleFrame applies one frame; an error is a connection error.
func (cc *h2Conn) handleFrame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return cc.onHeaders(f)
	case *http2.DataFrame:
		return cc.onData(f)
	case *http2.SettingsFrame:
		return cc.onSettings(f)
	case *http2.WindowUpdateFrame:
		return cc.onWindowUpdate(f)
	case *http2.PingFrame:
		if !f.IsAck() {
			cc.writeAsync(func(fr *http2.Framer) error { return fr.WritePing(true, f.Data) })
		}
	case *http2.RSTStreamFrame:
		cc.onReset(f)
	case *http2.GoAwayFrame:
		cc.onGoAway(f)
	case *http2.PushPromiseFrame:
		// Browsers no longer accept pushes (Chrome refuses them with
		// ENABLE_PUSH 0); decoding a promise's header block is not worth
		// keeping, so a push ends the connection as it does in x/net.
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil // PRIORITY, PRIORITY_UPDATE and unknown frames
}

func (cc *h2Conn) onHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	cc.mu.Lock()
	s := cc.streams[id]
	if s == nil {
		unknown := id%2 == 0 || id >= cc.nextID
		cc.mu.Unlock()
		if unknown {
			return fmt.Errorf("%w: HEADERS on stream %d we never opened", http2.ConnectionError(http2.ErrCodeProtocol), id)
		}
		return nil // a stream we reset
	}
	if f.Truncated {
		cc.mu.Unlock()
		cc.resetStream(id, http2.ErrCodeProtocol, errors.New("response header list over the limit"))
		return nil
	}
	if s.resp != nil {
		ok := cc.onTrailersLocked(s, f)
		cc.mu.Unlock()
		if !ok {
			cc.writeAsync(func(fr *http2.Framer) error { return fr.WriteRSTStream(id, http2.ErrCodeProtocol) })
		}
		return nil
	}
	code, err := strconv.Atoi(f.PseudoValue("status"))
	if err != nil || code < 100 || code > 999 || code == http.StatusSwitchingProtocols {
		cc.mu.Unlock()
		cc.resetStream(id, http2.ErrCodeProtocol, fmt.Errorf("bad :status %q", f.PseudoValue("status")))
		return nil
	}
	header, trailer := responseHeader(f)
	if code < 200 {
		req := s.req
		cc.mu.Unlock()
		if f.StreamEnded() {
			cc.resetStream(id, http2.ErrCodeProtocol, errors.New("1xx response ends its stream"))
			return nil
		}
		if trace := httptrace.ContextClientTrace(req.Context()); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(code, textproto.MIMEHeader(header)); err != nil {
				s.abort(err)
			}
		}
		return nil
	}
	resp := &http.Response{
		Status:        strconv.Itoa(code) + " " + http.StatusText(code),
		StatusCode:    code,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        header,
		Trailer:       trailer,
		ContentLength: -1,
		Request:       s.req,
	}
	if cl := header.Values("Content-Length"); len(cl) == 1 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
			resp.ContentLength = n
		}
	}
	if f.StreamEnded() {
		resp.Body = http.NoBody
		resp.ContentLength = 0
		s.remoteEnd = true
		if stop := s.stopCtx; stop != nil {
			s.stopCtx = nil
			defer stop() // runs after the unlock below
		}
		if s.localEnd {
			cc.removeStreamLocked(s)
		}
	} else {
		resp.Body = &h2Body{s: s}
	}
	s.resp = resp
	s.signalLocked()
	cc.cond.Broadcast()
	cc.mu.Unlock()
	return nil
}

// responseHeader turns a response's regular fields into a header, moving
// the names a Trailer field announces into the trailer.
func responseHeader(f *http2.MetaHeadersFrame) (header, trailer http.Header) {
	fields := f.RegularFields()
	header = make(http.Header, len(fields))
	for _, hf := range fields {
		key := http.CanonicalHeaderKey(hf.Name)
		if key == "Trailer" {
			for _, name := range strings.Split(hf.Value, ",") {
				if name = http.CanonicalHeaderKey(strings.TrimSpace(name)); name != "" {
					if trailer == nil {
						trailer = make(http.Header)
					}
					trailer[name] = nil
				}
			}
			continue
		}
		header[key] = append(header[key], hf.Value)
	}
	return header, trailer
}

// onTrailersLocked keeps a response's trailers, which end its stream, for
// the body's reader to put in resp.Trailer at EOF (h2Stream.trailer). It
// reports false, having failed the stream, when the frame cannot be
// trailers; the caller resets the stream.
func (cc *h2Conn) onTrailersLocked(s *h2Stream, f *http2.MetaHeadersFrame) bool {
	if !f.StreamEnded() || s.remoteEnd {
		s.endLocked(errors.New("HEADERS after the response that do not end the stream"))
		return false
	}
	t := make(http.Header)
	for _, hf := range f.RegularFields() {
		key := http.CanonicalHeaderKey(hf.Name)
		t[key] = append(t[key], hf.Value)
	}
	s.trailer = t
	s.remoteEnd = true
	if s.localEnd {
		cc.removeStreamLocked(s)
	}
	cc.cond.Broadcast()
	return true
}

func (cc *h2Conn) onData(f *http2.DataFrame) error {
	n := int64(f.Header().Length) // padding included: it counts against the windows
	data := f.Data()
	cc.mu.Lock()
	if n > cc.connRecvWindow {
		cc.mu.Unlock()
		return fmt.Errorf("%w: DATA past the connection window", http2.ConnectionError(http2.ErrCodeFlowControl))
	}
	cc.connRecvWindow -= n
	s := cc.streams[f.StreamID]
	if s == nil || s.resp == nil || s.remoteEnd || s.bodyClosed || s.err != nil {
		// Nobody will read it: give the connection's credit back now.
		inc := cc.giveBackLocked(n)
		var bad bool
		if s != nil && (s.resp == nil || s.remoteEnd) {
			bad = true
		}
		cc.mu.Unlock()
		if bad {
			cc.resetStream(f.StreamID, http2.ErrCodeProtocol, errors.New("DATA before the response head or after its end"))
		}
		if inc > 0 {
			cc.writeAsync(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(0, inc) })
		}
		return nil
	}
	if n > s.recvWindow {
		cc.mu.Unlock()
		cc.resetStream(f.StreamID, http2.ErrCodeFlowControl, errors.New("DATA past the stream window"))
		return nil
	}
	s.recvWindow -= n
	s.buf.Write(data)
	var inc uint32
	if pad := n - int64(len(data)); pad > 0 {
		inc = cc.giveBackLocked(pad)
		s.recvWindow += pad
	}
	if f.StreamEnded() {
		s.remoteEnd = true
		if s.localEnd {
			cc.removeStreamLocked(s)
		}
	}
	cc.cond.Broadcast()
	cc.mu.Unlock()
	if inc > 0 {
		cc.writeAsync(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(0, inc) })
	}
	return nil
}

func (cc *h2Conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	tableSize := int64(-1)
	cc.mu.Lock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		switch s.ID {
		case http2.SettingMaxConcurrentStreams:
			cc.maxStreams = min(s.Val, h2MaxStreamsCeiling)
		case http2.SettingInitialWindowSize:
			if s.Val > h2MaxStreamID {
				return http2.ConnectionError(http2.ErrCodeFlowControl)
			}
			delta := int64(s.Val) - cc.peerInitWindow
			for _, st := range cc.streams {
				st.sendWindow += delta
			}
			cc.peerInitWindow = int64(s.Val)
		case http2.SettingMaxFrameSize:
			if s.Val < h2DefaultFrameSize || s.Val > 1<<24-1 {
				return http2.ConnectionError(http2.ErrCodeProtocol)
			}
			cc.peerMaxFrame = s.Val
		case http2.SettingHeaderTableSize:
			tableSize = int64(s.Val)
		}
		return nil
	})
	cc.cond.Broadcast()
	cc.mu.Unlock()
	if err != nil {
		return err
	}
	cc.writeAsync(func(fr *http2.Framer) error {
		if tableSize >= 0 {
			cc.henc.SetMaxDynamicTableSizeLimit(uint32(tableSize)) // under wmu, as every encoding is
		}
		return fr.WriteSettingsAck()
	})
	return nil
}

func (cc *h2Conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	inc := int64(f.Increment)
	cc.mu.Lock()
	if f.StreamID == 0 {
		if cc.sendWindow+inc > h2MaxStreamID {
			cc.mu.Unlock()
			return fmt.Errorf("%w: connection window overflow", http2.ConnectionError(http2.ErrCodeFlowControl))
		}
		cc.sendWindow += inc
	} else if s := cc.streams[f.StreamID]; s != nil {
		if s.sendWindow+inc > h2MaxStreamID {
			cc.mu.Unlock()
			cc.resetStream(f.StreamID, http2.ErrCodeFlowControl, errors.New("stream window overflow"))
			return nil
		}
		s.sendWindow += inc
	}
	cc.cond.Broadcast()
	cc.mu.Unlock()
	return nil
}

func (cc *h2Conn) onReset(f *http2.RSTStreamFrame) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	s := cc.streams[f.StreamID]
	if s == nil {
		return
	}
	switch {
	case f.ErrCode == http2.ErrCodeRefusedStream && s.resp == nil:
		s.endLocked(fmt.Errorf("%w: RST_STREAM REFUSED_STREAM", errH2Retryable))
	case f.ErrCode == http2.ErrCodeNo && s.remoteEnd:
		// The whole response arrived; the origin wants no more body.
		s.endLocked(nil)
	default:
		s.endLocked(http2.StreamError{StreamID: f.StreamID, Code: f.ErrCode})
	}
}

func (cc *h2Conn) onGoAway(f *http2.GoAwayFrame) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.goAway = true
	cc.goAwayID = f.LastStreamID
	var refused []*h2Stream
	for id, s := range cc.streams {
		if id > f.LastStreamID {
			refused = append(refused, s)
		}
	}
	for _, s := range refused {
		s.endLocked(fmt.Errorf("%w: GOAWAY (%v)", errH2Retryable, f.ErrCode))
	}
	if len(cc.streams) == 0 {
		cc.failLocked(fmt.Errorf("%w: GOAWAY (%v)", errH2Closed, f.ErrCode))
	}
	cc.cond.Broadcast()
}
