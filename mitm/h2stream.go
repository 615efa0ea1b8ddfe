package mitm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// errStreamDone: the stream ended (reset, failed or aborted) while its
// request body was still being sent.
var errStreamDone = errors.New("HTTP/2 stream ended")

// h2Stream is one request on an h2Conn. Every field below the identity is
// guarded by cc.mu; waiting is on cc.cond.
type h2Stream struct {
	cc  *h2Conn
	id  uint32
	req *http.Request

	stopCtx     func() bool // stops watching the request's context
	sendWindow  int64       // what we may still send on the stream
	recvWindow  int64       // what the origin may still send on it
	recvUnacked int64       // consumed bytes not yet given back
	resp        *http.Response
	respCh      chan struct{} // closed once resp or err is set
	signalled   bool
	buf         bytes.Buffer // response body bytes not yet read
	trailer     http.Header  // trailers received, not yet in resp.Trailer
	remoteEnd   bool         // the origin sent END_STREAM
	localEnd    bool         // we sent END_STREAM or RST_STREAM
	err         error        // why the stream failed; nil while it works or after a clean end
	bodyClosed  bool
}

func (s *h2Stream) signalLocked() {
	if !s.signalled {
		s.signalled = true
		close(s.respCh)
	}
}

// endLocked fails the stream with err (unless its response already arrived
// in full, which stays readable) and forgets it.
func (s *h2Stream) endLocked(err error) {
	if s.err == nil && !s.remoteEnd {
		s.err = err
	}
	s.localEnd = true
	s.signalLocked()
	s.cc.removeStreamLocked(s)
	s.cc.cond.Broadcast()
}

// awaitResponse waits for the response head or the stream's failure.
func (s *h2Stream) awaitResponse() (*http.Response, error) {
	<-s.respCh
	s.cc.mu.Lock()
	defer s.cc.mu.Unlock()
	if s.resp != nil {
		return s.resp, nil
	}
	return nil, s.err
}

// abort ends the stream from our side with err: RST_STREAM(CANCEL) when it
// is still open on the wire, buffered data dropped and its flow-control
// credit given back. It is what a cancelled context and an early body Close
// do.
func (s *h2Stream) abort(err error) {
	cc := s.cc
	cc.mu.Lock()
	open := cc.streams[s.id] == s
	if s.err == nil && (!s.remoteEnd || s.bodyClosed) {
		s.err = err
	}
	var inc uint32
	if n := int64(s.buf.Len()); n > 0 && (s.bodyClosed || !s.remoteEnd) {
		s.buf.Reset()
		inc = cc.giveBackLocked(n)
	}
	s.endLocked(err)
	cc.mu.Unlock()
	if open || inc > 0 {
		cc.writeAsync(func(fr *http2.Framer) error {
			if open {
				if err := fr.WriteRSTStream(s.id, http2.ErrCodeCancel); err != nil {
					return err
				}
			}
			if inc > 0 {
				return fr.WriteWindowUpdate(0, inc)
			}
			return nil
		})
	}
}

// markLocalEnd records that END_STREAM went out.
func (s *h2Stream) markLocalEnd() {
	s.cc.mu.Lock()
	s.localEnd = true
	if s.remoteEnd {
		s.cc.removeStreamLocked(s)
	}
	s.cc.mu.Unlock()
}

// awaitSendWindow waits until n > 0 bytes may be sent and reserves up to n
// of them (at most one frame).
func (s *h2Stream) awaitSendWindow(n int) (int, error) {
	cc := s.cc
	cc.mu.Lock()
	defer cc.mu.Unlock()
	for {
		switch {
		case s.localEnd || s.err != nil:
			return 0, errStreamDone
		case cc.closed:
			return 0, fmt.Errorf("%w: %w", errH2Closed, cc.err)
		case s.sendWindow > 0 && cc.sendWindow > 0:
			take := min(int64(n), s.sendWindow, cc.sendWindow, int64(cc.peerMaxFrame))
			s.sendWindow -= take
			cc.sendWindow -= take
			return int(take), nil
		}
		cc.cond.Wait()
	}
}

// writeBody sends req's body as DATA frames within the flow-control
// windows, then its trailers (or an empty END_STREAM frame). It runs on a
// goroutine of its own for as long as the body takes to read; it returns
// once the body ends, fails, or the stream ends (after the read in
// progress), and closes the body.
func (s *h2Stream) writeBody(req *http.Request) {
	defer closeBody(req)
	cc := s.cc
	length := bodyLength(req)
	trailers := len(req.Trailer) > 0
	var sent int64
	if length != 0 {
		buf := make([]byte, 16<<10)
		for {
			n, rerr := req.Body.Read(buf)
			data := buf[:n]
			last := !trailers && (rerr == io.EOF || (length > 0 && sent+int64(n) >= length))
			for len(data) > 0 {
				take, err := s.awaitSendWindow(len(data))
				if err != nil {
					return
				}
				chunk := data[:take]
				data = data[take:]
				end := last && len(data) == 0
				if err := cc.writeFrame(func(fr *http2.Framer) error { return fr.WriteData(s.id, end, chunk) }); err != nil {
					cc.fail(err)
					return
				}
				sent += int64(take)
				if end {
					s.markLocalEnd()
					return
				}
			}
			if rerr == io.EOF || (length > 0 && sent >= length) {
				break
			}
			if rerr != nil {
				s.abort(fmt.Errorf("reading the request body: %w", rerr))
				return
			}
		}
	}
	s.cc.mu.Lock()
	done := s.localEnd || s.err != nil
	s.cc.mu.Unlock()
	if done {
		return
	}
	var err error
	if trailers {
		err = s.writeTrailers(req.Trailer)
	} else {
		err = cc.writeFrame(func(fr *http2.Framer) error { return fr.WriteData(s.id, true, nil) })
	}
	if err != nil {
		cc.fail(err)
		return
	}
	s.markLocalEnd()
}

// writeTrailers sends the request's trailers as the final HEADERS frame.
func (s *h2Stream) writeTrailers(t http.Header) error {
	cc := s.cc
	var fields []field
	for k, vs := range t {
		for _, v := range vs {
			fields = append(fields, field{name: strings.ToLower(k), value: v})
		}
	}
	if err := checkFields(fields); err != nil {
		return err
	}
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	cc.hbuf.Reset()
	for _, f := range fields {
		if err := cc.henc.WriteField(hpack.HeaderField{Name: f.name, Value: f.value}); err != nil {
			return err
		}
	}
	return cc.writeBlockLocked(s.id, cc.hbuf.Bytes(), nil, true)
}

// h2Body is a response body: the stream's buffered DATA, read with flow
// control given back as it is consumed.
type h2Body struct{ s *h2Stream }

func (b *h2Body) Read(p []byte) (int, error) {
	s := b.s
	cc := s.cc
	cc.mu.Lock()
	for s.buf.Len() == 0 && !s.remoteEnd && s.err == nil && !s.bodyClosed {
		cc.cond.Wait()
	}
	switch {
	case s.bodyClosed:
		cc.mu.Unlock()
		return 0, errH2BodyGone
	case s.buf.Len() > 0:
		n, _ := s.buf.Read(p)
		var streamInc uint32
		if !s.remoteEnd {
			s.recvUnacked += int64(n)
			if s.recvUnacked >= cc.recvInitWindow/2 {
				streamInc = uint32(s.recvUnacked)
				s.recvWindow += s.recvUnacked
				s.recvUnacked = 0
			}
		}
		connInc := cc.giveBackLocked(int64(n))
		cc.mu.Unlock()
		if streamInc > 0 || connInc > 0 {
			cc.writeAsync(func(fr *http2.Framer) error {
				if streamInc > 0 {
					if err := fr.WriteWindowUpdate(s.id, streamInc); err != nil {
						return err
					}
				}
				if connInc > 0 {
					return fr.WriteWindowUpdate(0, connInc)
				}
				return nil
			})
		}
		return n, nil
	case s.err != nil:
		err := s.err
		cc.mu.Unlock()
		return 0, err
	}
	s.takeTrailersLocked()
	cc.mu.Unlock()
	s.stopWatching()
	return 0, io.EOF
}

// takeTrailersLocked moves the trailers received into resp.Trailer. Only
// the body's reader calls it, at EOF or on a clean Close: net/http lets a
// caller read resp.Trailer whenever it is not calling Read (ReverseProxy
// lists the announced keys before copying the body), so the frame reader,
// which may meet the trailers at any moment, must not touch the map.
func (s *h2Stream) takeTrailersLocked() {
	if s.trailer == nil {
		return
	}
	t := s.resp.Trailer
	if t == nil {
		t = make(http.Header, len(s.trailer))
		s.resp.Trailer = t
	}
	for k, vs := range s.trailer {
		t[k] = append(t[k], vs...)
	}
	s.trailer = nil
}

// stopWatching stops watching the request's context: the response is
// over.
func (s *h2Stream) stopWatching() {
	s.cc.mu.Lock()
	stop := s.stopCtx
	s.stopCtx = nil
	s.cc.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// Close ends the body; before its end that resets the stream.
func (b *h2Body) Close() error {
	s := b.s
	cc := s.cc
	s.stopWatching()
	cc.mu.Lock()
	if s.bodyClosed {
		cc.mu.Unlock()
		return nil
	}
	s.bodyClosed = true
	clean := s.remoteEnd && s.buf.Len() == 0 && s.err == nil
	if clean {
		s.takeTrailersLocked()
	}
	cc.cond.Broadcast()
	cc.mu.Unlock()
	if !clean {
		s.abort(errH2BodyGone)
	}
	return nil
}
