package mitm

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawPeer is a frame-level HTTP/2 server the test drives by hand, to see
// exactly what hopper's client sends and to make it face what Go's server
// never does.
type rawPeer struct {
	t    *testing.T
	conn net.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	ebuf bytes.Buffer
}

// newRawPeer connects hopper's HTTP/2 client, made with p, to a raw peer
// over loopback TCP, and checks the client preface.
func newRawPeer(t *testing.T, p *Profile) (*h2Conn, *rawPeer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	sc, err := ln.Accept()
	require.NoError(t, err)
	require.NoError(t, sc.SetDeadline(time.Now().Add(20*time.Second)))
	oc, err := newH2Client(time.Minute).NewConn(c, p)
	require.NoError(t, err)
	cc := oc.(*h2Conn)
	peer := &rawPeer{t: t, conn: sc}
	peer.fr = http2.NewFramer(sc, sc)
	peer.fr.ReadMetaHeaders = hpack.NewDecoder(65536, nil)
	peer.enc = hpack.NewEncoder(&peer.ebuf)
	t.Cleanup(func() {
		_ = sc.Close()
		_ = cc.Close()
	})
	preface := make([]byte, len(http2.ClientPreface))
	_, err = io.ReadFull(sc, preface)
	require.NoError(t, err)
	require.Equal(t, http2.ClientPreface, string(preface))
	return cc, peer
}

func (p *rawPeer) read() http2.Frame {
	p.t.Helper()
	f, err := p.fr.ReadFrame()
	require.NoError(p.t, err)
	return f
}

// readUntil reads frames until one of type T arrives (others are dropped).
func readUntil[T http2.Frame](p *rawPeer) T {
	p.t.Helper()
	for {
		if f, ok := p.read().(T); ok {
			return f
		}
	}
}

func (p *rawPeer) block(fields ...string) []byte {
	p.ebuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		require.NoError(p.t, p.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]}))
	}
	return append([]byte(nil), p.ebuf.Bytes()...)
}

type rtResult struct {
	resp *http.Response
	err  error
}

// roundTrip runs cc.RoundTrip(req) on a goroutine and returns its result
// channel.
func roundTrip(cc *h2Conn, req *http.Request) <-chan rtResult {
	ch := make(chan rtResult, 1)
	go func() {
		resp, err := cc.RoundTrip(req)
		ch <- rtResult{resp, err}
	}()
	return ch
}

// The bytes on the wire are the profile's: SETTINGS in order, the window
// update, the PRIORITY tree, then HEADERS on the first stream with the
// profile's priority, pseudo-header order and header order.
func TestH2PrefaceIsTheProfiles(t *testing.T) {
	for _, name := range []string{"chrome", "firefox", "firefox120", "safari"} {
		t.Run(name, func(t *testing.T) {
			p := profile(t, name)
			cc, peer := newRawPeer(t, p)
			req := newReq(t, context.Background(), http.MethodGet, "https://shop.example/a?b=c", nil)
			for _, h := range p.Headers {
				req.Header.Set(h.Name, h.Value)
			}
			req.Header.Set("X-Extra", "1")
			res := roundTrip(cc, req)

			settings, ok := peer.read().(*http2.SettingsFrame)
			require.True(t, ok, "SETTINGS first")
			var got []string
			require.NoError(t, settings.ForeachSetting(func(s http2.Setting) error {
				got = append(got, s.ID.String()+"="+itoa(s.Val))
				return nil
			}))
			var want []string
			for _, s := range p.HTTP2.Settings {
				want = append(want, http2.SettingID(s.ID).String()+"="+itoa(s.Value))
			}
			assert.Equal(t, want, got, "SETTINGS ids, values and order")

			wu, ok := peer.read().(*http2.WindowUpdateFrame)
			require.True(t, ok, "then the connection's WINDOW_UPDATE")
			assert.Equal(t, uint32(0), wu.StreamID)
			assert.Equal(t, p.HTTP2.WindowUpdate, wu.Increment)
			for _, want := range p.HTTP2.Priorities {
				pf, ok := peer.read().(*http2.PriorityFrame)
				require.True(t, ok, "then the PRIORITY frames")
				assert.Equal(t, want.StreamID, pf.StreamID)
				assert.Equal(t, http2.PriorityParam{StreamDep: want.DependsOn, Exclusive: want.Exclusive, Weight: want.Weight}, pf.PriorityParam)
			}
			hf, ok := peer.read().(*http2.MetaHeadersFrame)
			require.True(t, ok, "then the request")
			assert.Equal(t, p.HTTP2.FirstStreamID, hf.StreamID)
			if hp := p.HTTP2.HeadersPriority; hp != nil {
				assert.True(t, hf.HasPriority())
				assert.Equal(t, http2.PriorityParam{StreamDep: hp.DependsOn, Exclusive: hp.Exclusive, Weight: hp.Weight}, hf.Priority)
			} else {
				assert.False(t, hf.HasPriority())
			}
			assert.True(t, hf.StreamEnded())
			var pseudo, names []string
			for _, f := range hf.Fields {
				if strings.HasPrefix(f.Name, ":") {
					pseudo = append(pseudo, f.Name)
				} else {
					names = append(names, f.Name)
				}
			}
			assert.Equal(t, p.HTTP2.PseudoHeaderOrder, pseudo)
			assert.Equal(t, "/a?b=c", hf.PseudoValue("path"))
			assert.Equal(t, "shop.example", hf.PseudoValue("authority"))
			ordered(t, p.HeaderOrder, names)
			assert.Contains(t, names, "x-extra")

			require.NoError(t, peer.fr.WriteSettings())
			require.NoError(t, peer.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: hf.StreamID, EndHeaders: true,
				BlockFragment: peer.block(":status", "200", "content-type", "text/plain")}))
			require.NoError(t, peer.fr.WriteData(hf.StreamID, true, []byte("ok")))
			r := <-res
			require.NoError(t, r.err)
			assert.Equal(t, "ok", string(readBody(t, r.resp)))
			assert.Equal(t, "text/plain", r.resp.Header.Get("Content-Type"))
			_ = readUntil[*http2.SettingsFrame](peer) // the ACK of ours
		})
	}
}

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

// startRequest sends a GET and returns the stream the peer saw it on.
func startRequest(t *testing.T, cc *h2Conn, peer *rawPeer, req *http.Request) (<-chan rtResult, uint32) {
	t.Helper()
	res := roundTrip(cc, req)
	hf := readUntil[*http2.MetaHeadersFrame](peer)
	return res, hf.StreamID
}

func TestH2RefusedStreamAndGoAwayAreRetryable(t *testing.T) {
	cc, peer := newRawPeer(t, profile(t, "chrome"))
	res, id := startRequest(t, cc, peer, newReq(t, context.Background(), http.MethodGet, "https://shop.example/", nil))
	require.NoError(t, peer.fr.WriteRSTStream(id, http2.ErrCodeRefusedStream))
	r := <-res
	assert.ErrorIs(t, r.err, errH2Retryable)
	assert.True(t, cc.CanTakeRequest(), "a refused stream leaves the connection usable")

	res, id = startRequest(t, cc, peer, newReq(t, context.Background(), http.MethodGet, "https://shop.example/", nil))
	require.NoError(t, peer.fr.WriteGoAway(id-2, http2.ErrCodeNo, nil))
	r = <-res
	assert.ErrorIs(t, r.err, errH2Retryable, "a stream past GOAWAY's last stream was not processed")
	assert.False(t, cc.CanTakeRequest())
}

func TestH2StreamErrorsAreNotRetryable(t *testing.T) {
	cc, peer := newRawPeer(t, profile(t, "chrome"))
	res, id := startRequest(t, cc, peer, newReq(t, context.Background(), http.MethodGet, "https://shop.example/", nil))
	require.NoError(t, peer.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true, BlockFragment: peer.block(":status", "200")}))
	r := <-res
	require.NoError(t, r.err)
	require.NoError(t, peer.fr.WriteData(id, false, []byte("part")))
	require.NoError(t, peer.fr.WriteRSTStream(id, http2.ErrCodeInternal))
	_, err := io.ReadAll(r.resp.Body)
	var se http2.StreamError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, http2.ErrCodeInternal, se.Code)
	assert.NotErrorIs(t, err, errH2Retryable)
	r.resp.Body.Close()
	assert.True(t, cc.CanTakeRequest())
}

func TestH2SendFlowControl(t *testing.T) {
	cc, peer := newRawPeer(t, profile(t, "chrome"))
	// The origin allows 10 bytes per stream until it says otherwise.
	require.NoError(t, peer.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10}))
	_ = readUntil[*http2.SettingsFrame](peer) // our SETTINGS
	ack := readUntil[*http2.SettingsFrame](peer)
	require.True(t, ack.IsAck())
	body := strings.Repeat("x", 25)
	req := newReq(t, context.Background(), http.MethodPost, "https://shop.example/up", strings.NewReader(body))
	res, id := startRequest(t, cc, peer, req)
	var got []byte
	d := readUntil[*http2.DataFrame](peer)
	got = append(got, d.Data()...)
	assert.Equal(t, 10, len(got), "no more than the stream window")
	require.NoError(t, peer.fr.WriteWindowUpdate(id, 100))
	for !d.StreamEnded() {
		d = readUntil[*http2.DataFrame](peer)
		got = append(got, d.Data()...)
	}
	assert.Equal(t, body, string(got))
	require.NoError(t, peer.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true, EndStream: true, BlockFragment: peer.block(":status", "204")}))
	r := <-res
	require.NoError(t, r.err)
	assert.Equal(t, 204, r.resp.StatusCode)
	assert.Equal(t, http.NoBody, r.resp.Body)
}

func TestH2ReceiveFlowControl(t *testing.T) {
	firefox := profile(t, "firefox") // stream window 131072, connection 12517377 + 65535
	cc, peer := newRawPeer(t, firefox)
	res, id := startRequest(t, cc, peer, newReq(t, context.Background(), http.MethodGet, "https://shop.example/", nil))
	require.NoError(t, peer.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true,
		BlockFragment: peer.block(":status", "200", "trailer", "x-checksum")}))
	r := <-res
	require.NoError(t, r.err)
	chunk := bytes.Repeat([]byte("y"), 16384)
	for i := 0; i < 8; i++ { // 128 KiB: the whole stream window
		require.NoError(t, peer.fr.WriteData(id, false, chunk))
	}
	// The ack follows the DATA frames through the frame reader, so all of
	// them are buffered before the first Read (which otherwise may find
	// only part of them and give back what it found instead of 70000).
	require.NoError(t, peer.fr.WritePing(false, [8]byte{1}))
	require.True(t, readUntil[*http2.PingFrame](peer).IsAck())
	buf := make([]byte, 70000)
	_, err := io.ReadFull(r.resp.Body, buf)
	require.NoError(t, err)
	wu := readUntil[*http2.WindowUpdateFrame](peer)
	assert.Equal(t, id, wu.StreamID, "reading half the window gives the stream credit back")
	assert.Equal(t, uint32(70000), wu.Increment)
	require.NoError(t, peer.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true, EndStream: true,
		BlockFragment: peer.block("x-checksum", "abc")}))
	rest, err := io.ReadAll(r.resp.Body)
	require.NoError(t, err)
	assert.Equal(t, 8*16384-70000, len(rest))
	assert.Equal(t, "abc", r.resp.Trailer.Get("X-Checksum"), "trailers after the body")
	require.NoError(t, r.resp.Body.Close())

	// More than the stream window is a flow-control error on that stream.
	res, id = startRequest(t, cc, peer, newReq(t, context.Background(), http.MethodGet, "https://shop.example/2", nil))
	require.NoError(t, peer.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true, BlockFragment: peer.block(":status", "200")}))
	r = <-res
	require.NoError(t, r.err)
	for i := 0; i < 9; i++ {
		require.NoError(t, peer.fr.WriteData(id, false, chunk))
	}
	rst := readUntil[*http2.RSTStreamFrame](peer)
	assert.Equal(t, id, rst.StreamID)
	assert.Equal(t, http2.ErrCodeFlowControl, rst.ErrCode)
	_, err = io.ReadAll(r.resp.Body)
	assert.Error(t, err)
	r.resp.Body.Close()
}

// Trailers reach resp.Trailer only when the body's Read returns EOF, as
// net/http has it: a caller may look at resp.Trailer whenever it is not
// reading the body, and httputil.ReverseProxy lists the announced keys
// before it copies the body, while the origin's trailers may already be
// arriving. The frame reader filling the map then was a data race, which
// -race reports here: the keys are read on a goroutine of their own while
// the trailers arrive.
func TestH2TrailersWaitForTheBodysEnd(t *testing.T) {
	cc, peer := newRawPeer(t, profile(t, "chrome"))
	res, id := startRequest(t, cc, peer, newReq(t, context.Background(), http.MethodGet, "https://shop.example/", nil))
	require.NoError(t, peer.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true,
		BlockFragment: peer.block(":status", "200", "trailer", "x-checksum")}))
	r := <-res
	require.NoError(t, r.err)
	announced := make(chan []string, 1)
	go func() {
		var keys []string
		for k := range r.resp.Trailer {
			keys = append(keys, k)
		}
		announced <- keys
	}()
	require.NoError(t, peer.fr.WriteData(id, false, []byte("body")))
	require.NoError(t, peer.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true, EndStream: true,
		BlockFragment: peer.block("x-checksum", "abc")}))
	require.NoError(t, peer.fr.WritePing(false, [8]byte{7}))
	ack := readUntil[*http2.PingFrame](peer) // answered after the trailers were read
	require.True(t, ack.IsAck())
	assert.Equal(t, []string{"X-Checksum"}, <-announced)
	assert.Nil(t, r.resp.Trailer["X-Checksum"], "no value before the body's end")

	body, err := io.ReadAll(r.resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "body", string(body))
	assert.Equal(t, []string{"abc"}, r.resp.Trailer["X-Checksum"], "the value once Read returned EOF")
	require.NoError(t, r.resp.Body.Close())
}

func TestH2AnswersPingAndSettings(t *testing.T) {
	cc, peer := newRawPeer(t, profile(t, "chrome"))
	_ = cc
	_ = readUntil[*http2.SettingsFrame](peer)
	require.NoError(t, peer.fr.WritePing(false, [8]byte{1, 2, 3, 4, 5, 6, 7, 8}))
	ping := readUntil[*http2.PingFrame](peer)
	assert.True(t, ping.IsAck())
	assert.Equal(t, [8]byte{1, 2, 3, 4, 5, 6, 7, 8}, ping.Data)
	require.NoError(t, peer.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 0}))
	ack := readUntil[*http2.SettingsFrame](peer)
	assert.True(t, ack.IsAck())
	assert.False(t, cc.CanTakeRequest(), "MAX_CONCURRENT_STREAMS 0 admits no stream")
}

func TestH2ProtocolViolationsEndTheConnection(t *testing.T) {
	for _, tc := range []struct {
		name string
		send func(peer *rawPeer, id uint32)
		code http2.ErrCode
	}{
		{"DATA past the connection window", func(peer *rawPeer, id uint32) {
			big := make([]byte, 16384)
			for i := 0; i < 5; i++ { // 80 KiB > the 64 KiB connection window
				_ = peer.fr.WriteData(id, false, big)
			}
		}, http2.ErrCodeFlowControl},
		{"PUSH_PROMISE", func(peer *rawPeer, id uint32) {
			_ = peer.fr.WritePushPromise(http2.PushPromiseParam{StreamID: id, PromiseID: 2, BlockFragment: peer.block(":method", "GET"), EndHeaders: true})
		}, http2.ErrCodeProtocol},
		{"HEADERS on a stream never opened", func(peer *rawPeer, id uint32) {
			_ = peer.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id + 100, EndHeaders: true, BlockFragment: peer.block(":status", "200")})
		}, http2.ErrCodeProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := *profile(t, "chrome")
			p.HTTP2 = p.HTTP2.Clone()
			p.HTTP2.WindowUpdate = 0 // the RFC's 64 KiB connection window
			p.HTTP2.Settings = nil
			cc, peer := newRawPeer(t, &p)
			res, id := startRequest(t, cc, peer, newReq(t, context.Background(), http.MethodGet, "https://shop.example/", nil))
			require.NoError(t, peer.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true, BlockFragment: peer.block(":status", "200")}))
			r := <-res
			require.NoError(t, r.err)
			tc.send(peer, id)
			ga := readUntil[*http2.GoAwayFrame](peer)
			assert.Equal(t, tc.code, ga.ErrCode)
			_, err := io.ReadAll(r.resp.Body)
			assert.ErrorIs(t, err, errH2Closed)
			r.resp.Body.Close()
			assert.False(t, cc.CanTakeRequest())
		})
	}
}
