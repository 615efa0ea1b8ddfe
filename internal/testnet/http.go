package testnet

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/hopper-proxy/hopper/fingerprint"
)

// ForwardHTTP is one exchange of a forwarding proxy: it writes req to the
// origin connection out, reads the response through obr (out's reader)
// and writes it to the client c.
func ForwardHTTP(c io.Writer, out io.Writer, obr *bufio.Reader, req *http.Request) error {
	if err := req.Write(out); err != nil {
		return fmt.Errorf("forward request: %w", err)
	}
	resp, err := http.ReadResponse(obr, req)
	if err != nil {
		return fmt.Errorf("forward response: %w", err)
	}
	defer resp.Body.Close()
	if err := resp.Write(c); err != nil {
		return fmt.Errorf("forward response to the client: %w", err)
	}
	return nil
}

// H2Get sends one GET for https://authority/path over conn (TLS on which
// h2 was negotiated) as a raw HTTP/2 client showing the preface pre: its
// SETTINGS, WINDOW_UPDATE (when not 0) and PRIORITY frames, its order of
// pseudo-headers and its HEADERS priority, then fields in order. It
// acknowledges the server's SETTINGS, requires status 200 and returns the
// response body. Everything is bounded by a deadline of 20s on conn.
func H2Get(t testing.TB, conn net.Conn, pre fingerprint.HTTP2, authority, path string, fields [][2]string) []byte {
	t.Helper()
	if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatalf("testnet: h2: %v", err)
	}
	var out bytes.Buffer
	out.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&out, nil)
	settings := make([]http2.Setting, len(pre.Settings))
	for i, s := range pre.Settings {
		settings[i] = http2.Setting{ID: http2.SettingID(s.ID), Val: s.Value}
	}
	must(t, fr.WriteSettings(settings...))
	if pre.WindowUpdate > 0 {
		must(t, fr.WriteWindowUpdate(0, pre.WindowUpdate))
	}
	for _, p := range pre.Priorities {
		must(t, fr.WritePriority(p.StreamID, http2.PriorityParam{StreamDep: p.DependsOn, Exclusive: p.Exclusive, Weight: p.Weight}))
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	values := map[string]string{":method": "GET", ":authority": authority, ":scheme": "https", ":path": path}
	for _, name := range pre.PseudoHeaderOrder {
		must(t, enc.WriteField(hpack.HeaderField{Name: name, Value: values[name]}))
	}
	for _, f := range fields {
		must(t, enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}))
	}
	stream := pre.FirstStreamID
	if stream == 0 {
		stream = 1
	}
	hp := http2.HeadersFrameParam{StreamID: stream, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}
	if p := pre.HeadersPriority; p != nil {
		hp.Priority = http2.PriorityParam{StreamDep: p.DependsOn, Exclusive: p.Exclusive, Weight: p.Weight}
	}
	must(t, fr.WriteHeaders(hp))
	_, err := conn.Write(out.Bytes())
	must(t, err)

	rf := http2.NewFramer(conn, conn)
	rf.ReadMetaHeaders = hpack.NewDecoder(65536, nil)
	var body []byte
	for {
		f, err := rf.ReadFrame()
		must(t, err)
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				must(t, rf.WriteSettingsAck())
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == stream {
				if status := f.PseudoValue("status"); status != "200" {
					t.Fatalf("testnet: h2: status %q", status)
				}
			}
		case *http2.DataFrame:
			if f.StreamID == stream {
				body = append(body, f.Data()...)
				if f.StreamEnded() {
					return body
				}
			}
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("testnet: h2: %v", err)
	}
}
