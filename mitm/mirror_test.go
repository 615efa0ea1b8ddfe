package mitm

import (
	"crypto/tls"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	utls "github.com/refraction-networking/utls"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/fingerprint"
)

// helloRecord returns the ClientHello uTLS builds for spec (or id) as a
// TLS record, as a client would send it to hopper.
func helloRecord(t *testing.T, id utls.ClientHelloID, spec *utls.ClientHelloSpec) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	uc := utls.UClient(a, &utls.Config{ServerName: "shop.example"}, id)
	if spec != nil {
		require.NoError(t, uc.ApplyPreset(spec))
	}
	require.NoError(t, uc.BuildHandshakeState())
	msg := uc.HandshakeState.Hello.Raw
	return append([]byte{0x16, 0x03, 0x01, byte(len(msg) >> 8), byte(len(msg))}, msg...)
}

// mirrored is the ClientHello hopper sends an origin for a client that sent
// record.
func mirrored(t *testing.T, record []byte) *fingerprint.ClientHello {
	t.Helper()
	spec, err := mirrorSpec(record)
	require.NoError(t, err)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	uc := utls.UClient(a, &utls.Config{ServerName: "shop.example"}, utls.HelloCustom)
	require.NoError(t, uc.ApplyPreset(spec))
	require.NoError(t, uc.BuildHandshakeState())
	h, err := fingerprint.ParseClientHello(uc.HandshakeState.Hello.Raw)
	require.NoError(t, err)
	return h
}

func parseRecord(t *testing.T, record []byte) *fingerprint.ClientHello {
	t.Helper()
	msg, _, _, err := fingerprint.ExtractClientHello(record)
	require.NoError(t, err)
	h, err := fingerprint.ParseClientHello(msg)
	require.NoError(t, err)
	return h
}

// The mirror profile rebuilds a client's ClientHello with the same JA4
// (ciphers, extensions, signature algorithms, ALPN) and the same extension
// order, whoever the client is.
func TestMirrorSpecReproducesTheClientHello(t *testing.T) {
	records := map[string][]byte{}
	for _, id := range []utls.ClientHelloID{utls.HelloChrome_133, utls.HelloFirefox_120, utls.HelloSafari_16_0, utls.HelloIOS_14, utls.HelloEdge_85} {
		records[id.Str()] = helloRecord(t, id, nil)
	}
	for _, name := range []string{"chromium-156", "firefox-153", "curl"} { // recorded off the wire
		b, err := os.ReadFile("testdata/hellos/" + name + ".bin")
		require.NoError(t, err)
		records[name] = b
	}
	records["go crypto/tls"] = goClientHello(t)
	for name, record := range records {
		t.Run(name, func(t *testing.T) {
			want := parseRecord(t, record)
			got := mirrored(t, record)
			assert.Equal(t, want.JA4(), got.JA4())
			assert.Equal(t, want.JA4R(), got.JA4R())
			assert.Equal(t, want.Extensions, withGREASEAt(got.Extensions, want.Extensions), "extension order")
			assert.Equal(t, "shop.example", got.ServerName)
		})
	}
}

// withGREASEAt replaces got's GREASE values by want's (uTLS picks fresh
// ones), so that orders compare.
func withGREASEAt(got, want []uint16) []uint16 {
	out := slices.Clone(got)
	for i := range out {
		if i < len(want) && fingerprint.IsGREASE(out[i]) && fingerprint.IsGREASE(want[i]) {
			out[i] = want[i]
		}
	}
	return out
}

func TestMirrorDropsEarlyData(t *testing.T) {
	spec, err := utls.UTLSIdToSpec(utls.HelloChrome_133)
	require.NoError(t, err)
	spec.Extensions = append(spec.Extensions, &utls.GenericExtension{Id: fingerprint.ExtEarlyData})
	record := helloRecord(t, utls.HelloCustom, &spec)
	require.Contains(t, parseRecord(t, record).Extensions, fingerprint.ExtEarlyData)
	got := mirrored(t, record)
	assert.NotContains(t, got.Extensions, fingerprint.ExtEarlyData, "0-RTT with hopper means nothing to the origin")
}

// goClientHello records crypto/tls's ClientHello.
func goClientHello(t *testing.T) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer b.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tls.Client(a, &tls.Config{ServerName: "shop.example", NextProtos: []string{"h2", "http/1.1"}}).Handshake()
	}()
	require.NoError(t, b.SetReadDeadline(time.Now().Add(5*time.Second)))
	var got []byte
	buf := make([]byte, 4096)
	for {
		n, err := b.Read(buf)
		require.NoError(t, err)
		got = append(got, buf[:n]...)
		if _, _, used, err := fingerprint.ExtractClientHello(got); err == nil {
			got = got[:used]
			break
		}
	}
	_ = a.Close()
	<-done
	return got
}
