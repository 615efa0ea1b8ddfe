package mitm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/hopper-proxy/hopper/fingerprint"
)

// Errors of the HTTP/2 client. A request that failed with errH2Retryable
// never reached the origin's application (GOAWAY before its stream, or
// REFUSED_STREAM) and may be sent again on another connection.
var (
	errH2Closed    = errors.New("HTTP/2 connection closed")
	errH2Retryable = errors.New("HTTP/2 stream refused; the request was not processed")
	errH2BodyGone  = errors.New("response body closed")
)

// Defaults the RFC gives a peer that has not said otherwise.
const (
	h2DefaultWindow     = 65535
	h2DefaultFrameSize  = 16384
	h2DefaultTableSize  = 4096
	h2MaxStreamsBefore  = 100 // until the origin's SETTINGS say (x/net does the same)
	h2MaxStreamsCeiling = 1000
	h2MaxHeaderList     = 10 << 20
	h2MaxStreamID       = 1<<31 - 1
)

// h2Client is hopper's HTTP/2 origin client, built on x/net/http2's Framer
// and hpack so that every byte the origin fingerprints is the profile's:
// the connection preface (SETTINGS ids, values and order, the connection
// WINDOW_UPDATE, PRIORITY frames), the first stream's identifier, each
// HEADERS frame's priority, the pseudo-header order and the header order.
// It implements flow control both ways, concurrent streams up to the
// origin's limit, request bodies and trailers, and GOAWAY and RST_STREAM.
type h2Client struct {
	// idle closes a connection that reads nothing for this long (0: never).
	idle time.Duration
}

var _ HTTP2Client = (*h2Client)(nil)

func newH2Client(idle time.Duration) *h2Client { return &h2Client{idle: idle} }

// NewConn writes p's connection preface on conn and starts reading frames.
// The returned connection owns conn.
func (c *h2Client) NewConn(conn net.Conn, p *Profile) (OriginConn, error) {
	cc := newH2Conn(conn, p, c.idle)
	if err := cc.writePreface(); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("writing the HTTP/2 preface: %w", err)
	}
	cc.readerDone = make(chan struct{})
	go cc.readLoop()
	return cc, nil
}

// h2Conn is one HTTP/2 connection to an origin.
type h2Conn struct {
	conn    net.Conn
	profile *Profile
	pre     fingerprint.HTTP2 // the preface this connection sent
	idle    time.Duration

	fr         *http2.Framer // reads in readLoop; writes under wmu
	readerDone chan struct{}

	wmu  sync.Mutex // frame writes: fr's write side, bw, henc, hbuf
	bw   *bufio.Writer
	henc *hpack.Encoder
	hbuf bytes.Buffer

	mu              sync.Mutex
	cond            *sync.Cond // any change a stream or a writer may wait for
	streams         map[uint32]*h2Stream
	nextID          uint32
	maxStreams      uint32
	sendWindow      int64 // connection send window
	peerInitWindow  int64 // origin's INITIAL_WINDOW_SIZE for our sending
	peerMaxFrame    uint32
	recvInitWindow  int64 // our INITIAL_WINDOW_SIZE for the origin's sending
	connRecvWindow  int64 // what the origin may still send on the connection
	connRecvTotal   int64 // the connection window we maintain
	connRecvUnacked int64 // consumed bytes not yet given back
	goAway          bool
	goAwayID        uint32
	closed          bool
	err             error // why the connection ended
}

func newH2Conn(conn net.Conn, p *Profile, idle time.Duration) *h2Conn {
	cc := &h2Conn{
		conn:           conn,
		profile:        p,
		pre:            p.HTTP2.Clone(),
		idle:           idle,
		bw:             bufio.NewWriterSize(conn, 16<<10),
		streams:        make(map[uint32]*h2Stream),
		nextID:         1,
		maxStreams:     h2MaxStreamsBefore,
		sendWindow:     h2DefaultWindow,
		peerInitWindow: h2DefaultWindow,
		peerMaxFrame:   h2DefaultFrameSize,
		recvInitWindow: h2DefaultWindow,
	}
	cc.cond = sync.NewCond(&cc.mu)
	if id := cc.pre.FirstStreamID; id%2 == 1 {
		cc.nextID = id
	}
	tableSize, maxFrame, maxList := uint32(h2DefaultTableSize), uint32(h2DefaultFrameSize), uint32(h2MaxHeaderList)
	for _, s := range cc.pre.Settings {
		switch http2.SettingID(s.ID) {
		case http2.SettingHeaderTableSize:
			tableSize = s.Value
		case http2.SettingInitialWindowSize:
			if s.Value <= h2MaxStreamID {
				cc.recvInitWindow = int64(s.Value)
			}
		case http2.SettingMaxFrameSize:
			if s.Value >= h2DefaultFrameSize && s.Value <= 1<<24-1 {
				maxFrame = s.Value
			}
		case http2.SettingMaxHeaderListSize:
			maxList = s.Value
		}
	}
	cc.connRecvTotal = h2DefaultWindow + int64(cc.pre.WindowUpdate)
	cc.connRecvWindow = cc.connRecvTotal
	cc.fr = http2.NewFramer(cc.bw, bufio.NewReaderSize(conn, 16<<10))
	cc.fr.SetMaxReadFrameSize(maxFrame)
	cc.fr.MaxHeaderListSize = maxList
	cc.fr.ReadMetaHeaders = hpack.NewDecoder(tableSize, nil)
	cc.henc = hpack.NewEncoder(&cc.hbuf)
	return cc
}

// writePreface sends what the profile's browser sends first: the client
// preface, its SETTINGS in its order, the connection WINDOW_UPDATE and its
// PRIORITY frames, in one write.
func (cc *h2Conn) writePreface() error {
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	if _, err := cc.bw.WriteString(http2.ClientPreface); err != nil {
		return err
	}
	settings := make([]http2.Setting, len(cc.pre.Settings))
	for i, s := range cc.pre.Settings {
		settings[i] = http2.Setting{ID: http2.SettingID(s.ID), Val: s.Value}
	}
	if err := cc.fr.WriteSettings(settings...); err != nil {
		return err
	}
	if cc.pre.WindowUpdate > 0 {
		if err := cc.fr.WriteWindowUpdate(0, cc.pre.WindowUpdate); err != nil {
			return err
		}
	}
	for _, p := range cc.pre.Priorities {
		if err := cc.fr.WritePriority(p.StreamID, priorityParam(p)); err != nil {
			return err
		}
	}
	return cc.bw.Flush()
}

func priorityParam(p fingerprint.Priority) http2.PriorityParam {
	return http2.PriorityParam{StreamDep: p.DependsOn, Exclusive: p.Exclusive, Weight: p.Weight}
}

// CanTakeRequest reports whether a new stream may start now.
func (cc *h2Conn) CanTakeRequest() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.canTakeLocked()
}

func (cc *h2Conn) canTakeLocked() bool {
	return !cc.closed && !cc.goAway && uint32(len(cc.streams)) < cc.maxStreams && cc.nextID < h2MaxStreamID-2
}

// Close closes the connection, failing every stream in flight, and waits
// for the frame reader to stop.
func (cc *h2Conn) Close() error {
	cc.fail(errH2Closed)
	err := cc.conn.Close()
	if cc.readerDone != nil {
		<-cc.readerDone
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// fail ends the connection with err: every stream fails, every waiter
// wakes. The first error wins.
func (cc *h2Conn) fail(err error) {
	cc.mu.Lock()
	cc.failLocked(err)
	cc.mu.Unlock()
}

func (cc *h2Conn) failLocked(err error) {
	if cc.closed {
		return
	}
	cc.closed, cc.err = true, err
	streams := make([]*h2Stream, 0, len(cc.streams))
	for _, s := range cc.streams {
		streams = append(streams, s)
	}
	for _, s := range streams {
		s.endLocked(fmt.Errorf("%w: %w", errH2Closed, err))
	}
	cc.cond.Broadcast()
	_ = cc.conn.Close() // takes no lock of ours; the reader sees it and stops
}

// RoundTrip sends req on a new stream and returns the response once its
// head arrives. The body streams; closing it before its end resets the
// stream. Cancelling req's context resets the stream too.
func (cc *h2Conn) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	hasBody := bodyLength(req) != 0
	fields := requestFields(req, cc.profile, true)
	if err := checkFields(fields); err != nil {
		closeBody(req)
		return nil, err
	}
	pseudo := cc.pseudoHeaders(req)
	prio := cc.pre.HeadersPriority
	if head := clientHeadFrom(ctx); head != nil && head.Priority != nil {
		prio = head.Priority // mirror: this request's own priority
	}

	endStream := !hasBody && len(req.Trailer) == 0
	s, err := cc.openStream(ctx, req, endStream)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	if err := cc.writeHeaders(s.id, pseudo, fields, prio, endStream); err != nil {
		cc.fail(err)
		closeBody(req)
		return nil, fmt.Errorf("writing request headers: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { s.abort(context.Cause(ctx)) })
	cc.mu.Lock()
	s.stopCtx = stop
	cc.mu.Unlock()
	if hasBody || len(req.Trailer) > 0 {
		// The body writer lives as long as the body takes to read (the
		// caller owns the body; net/http's server ends it with the
		// handler), or until the stream ends after the read in progress.
		go s.writeBody(req)
	} else {
		closeBody(req)
	}
	resp, err := s.awaitResponse()
	if err != nil {
		stop()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", context.Cause(ctx), err)
		}
		return nil, err
	}
	return resp, nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// openStream waits (bounded by ctx) until the connection may start a
// stream, then registers one with the next identifier. Streams must start
// in increasing order, so openStream returns holding wmu, which
// writeHeaders releases once the HEADERS are written.
func (cc *h2Conn) openStream(ctx context.Context, req *http.Request, endStream bool) (*h2Stream, error) {
	stop := context.AfterFunc(ctx, func() {
		cc.mu.Lock()
		cc.cond.Broadcast()
		cc.mu.Unlock()
	})
	defer stop()
	cc.wmu.Lock() // released by writeHeaders
	cc.mu.Lock()
	defer cc.mu.Unlock()
	for {
		switch {
		case cc.closed:
			cc.wmu.Unlock()
			return nil, fmt.Errorf("%w: %w", errH2Retryable, cc.err)
		case cc.goAway || cc.nextID >= h2MaxStreamID-2:
			cc.wmu.Unlock()
			return nil, fmt.Errorf("%w: the origin is going away", errH2Retryable)
		case ctx.Err() != nil:
			cc.wmu.Unlock()
			return nil, context.Cause(ctx)
		case uint32(len(cc.streams)) < cc.maxStreams:
			s := &h2Stream{
				cc:         cc,
				id:         cc.nextID,
				req:        req,
				sendWindow: cc.peerInitWindow,
				recvWindow: cc.recvInitWindow,
				respCh:     make(chan struct{}),
				localEnd:   endStream, // the HEADERS carry END_STREAM
			}
			cc.nextID += 2
			cc.streams[s.id] = s
			return s, nil
		}
		// Wait for a stream to end; wmu is not held while waiting.
		cc.wmu.Unlock()
		cc.cond.Wait()
		cc.mu.Unlock()
		cc.wmu.Lock()
		cc.mu.Lock()
	}
}

// removeStreamLocked forgets s; a GOAWAY'd connection with no stream left
// closes.
func (cc *h2Conn) removeStreamLocked(s *h2Stream) {
	if cc.streams[s.id] != s {
		return
	}
	delete(cc.streams, s.id)
	cc.cond.Broadcast()
	if cc.goAway && len(cc.streams) == 0 {
		cc.failLocked(fmt.Errorf("%w: GOAWAY and no stream left", errH2Closed))
	}
}

// giveBackLocked returns n consumed bytes to the connection's receive
// window, and says how much to announce in a WINDOW_UPDATE now (0: not
// yet; updates go out once half the window is used, as browsers do).
func (cc *h2Conn) giveBackLocked(n int64) uint32 {
	cc.connRecvUnacked += n
	if cc.connRecvUnacked < cc.connRecvTotal/2 {
		return 0
	}
	inc := cc.connRecvUnacked
	cc.connRecvUnacked = 0
	cc.connRecvWindow += inc
	return uint32(inc)
}
