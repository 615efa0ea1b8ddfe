package fingerprint

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	utls "github.com/refraction-networking/utls"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// utlsHello is the ClientHello message uTLS builds for id and server name.
func utlsHello(t testing.TB, id utls.ClientHelloID, name string) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	uc := utls.UClient(a, &utls.Config{ServerName: name, InsecureSkipVerify: name == ""}, id)
	require.NoError(t, uc.BuildHandshakeState())
	return append([]byte(nil), uc.HandshakeState.Hello.Raw...)
}

// goHelloRecords captures the records crypto/tls sends as its first flight
// (the ClientHello) for cfg.
func goHelloRecords(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer b.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.SetDeadline(time.Now().Add(5 * time.Second))
		_ = tls.Client(a, cfg).Handshake() // fails once b closes
	}()
	var got []byte
	buf := make([]byte, 4096)
	require.NoError(t, b.SetReadDeadline(time.Now().Add(5*time.Second)))
	for {
		n, err := b.Read(buf)
		got = append(got, buf[:n]...)
		require.NoError(t, err)
		if _, _, _, err := ExtractClientHello(got); err == nil {
			break
		}
	}
	_ = b.Close()
	_ = a.Close()
	<-done
	return got
}

// record wraps a handshake message in TLS records of at most size bytes.
func record(msg []byte, size int) []byte {
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, 0x16, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// chromeLists are Chrome's ClientHello lists as a fingerprinting service
// printed them (JA4_r of Chrome 143: t13d1516h2_..._...), with the GREASE
// values and the order a real hello has.
var chromeHello = &ClientHello{
	Version: 0x0303,
	CipherSuites: []uint16{0x3a3a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8,
		0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035},
	Extensions: []uint16{0x8a8a, 0x002d, 0x0033, 0x0010, 0xfe0d, 0x0017, 0x44cd, 0x0000, 0x000b, 0x000a,
		0x002b, 0xff01, 0x0023, 0x0012, 0x0005, 0x000d, 0x001b, 0x9a9a},
	ALPN:                []string{"h2", "http/1.1"},
	SupportedVersions:   []uint16{0x7a7a, 0x0304, 0x0303},
	SignatureAlgorithms: []uint16{0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601},
}

func TestJA4OfAKnownChrome(t *testing.T) {
	assert.Equal(t, "t13d1516h2_8daaf6152771_d8a2da3f94cd", chromeHello.JA4())
	assert.Equal(t, "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_"+
		"0005,000a,000b,000d,0012,0017,001b,0023,002b,002d,0033,44cd,fe0d,ff01_0403,0804,0401,0503,0805,0501,0806,0601",
		chromeHello.JA4R())
}

func TestJA4Parts(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(h *ClientHello)
		want string // the first part, or a full JA4 when it has underscores
	}{
		{"as sent", func(*ClientHello) {}, "t13d1516h2"},
		{"no SNI", func(h *ClientHello) { h.Extensions = drop(h.Extensions, ExtServerName) }, "t13i1515h2"},
		{"no ALPN", func(h *ClientHello) { h.ALPN = nil }, "t13d151600"},
		{"http/1.1 first", func(h *ClientHello) { h.ALPN = []string{"http/1.1"} }, "t13d1516h1"},
		{"non-alphanumeric ALPN", func(h *ClientHello) { h.ALPN = []string{"\xab\x01"} }, "t13d1516a1"},
		{"one-letter ALPN", func(h *ClientHello) { h.ALPN = []string{"x"} }, "t13d1516xx"},
		{"TLS 1.2 only", func(h *ClientHello) {
			h.SupportedVersions = nil
			h.Extensions = drop(h.Extensions, ExtSupportedVersions)
		}, "t12d1515h2"},
		{"SSL 3.0 legacy", func(h *ClientHello) {
			h.SupportedVersions, h.Version = nil, 0x0300
		}, "ts3d1516h2"},
		{"unknown version", func(h *ClientHello) { h.SupportedVersions = []uint16{0x0305} }, "t00d1516h2"},
		{"no ciphers, no extensions", func(h *ClientHello) {
			h.CipherSuites, h.Extensions, h.SignatureAlgorithms, h.SupportedVersions, h.ALPN = nil, nil, nil, nil, nil
		}, "t12i000000_000000000000_000000000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := *chromeHello
			h.Extensions = append([]uint16(nil), h.Extensions...)
			tc.edit(&h)
			ja4 := h.JA4()
			if strings.Contains(tc.want, "_") {
				assert.Equal(t, tc.want, ja4)
			} else {
				assert.Equal(t, tc.want, strings.SplitN(ja4, "_", 2)[0])
			}
			assert.Regexp(t, ja4Pattern, ja4)
		})
	}
}

var ja4Pattern = regexp.MustCompile(`^t(13|12|11|10|s3|s2|d1|d2|d3|00)[di]\d{4}[0-9a-zA-Z]{2}_[0-9a-f]{12}_[0-9a-f]{12}$`)

func drop(vs []uint16, v uint16) []uint16 {
	out := vs[:0]
	for _, x := range vs {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

func TestParseUTLSParrots(t *testing.T) {
	for _, tc := range []struct {
		id     utls.ClientHelloID
		ja4    string
		grease bool
	}{
		{utls.HelloChrome_133, "t13d1516h2_8daaf6152771_d8a2da3f94cd", true},
		{utls.HelloFirefox_120, "t13d1715h2_5b57614c22b0_5c2c66f702b0", false},
		{utls.HelloSafari_16_0, "t13d2014h2_a09f3c656075_14788d8d241b", true},
	} {
		t.Run(tc.id.Str(), func(t *testing.T) {
			msg := utlsHello(t, tc.id, "shop.example")
			h, err := ParseClientHello(msg)
			require.NoError(t, err)
			assert.Equal(t, "shop.example", h.ServerName)
			assert.Equal(t, []string{"h2", "http/1.1"}, h.ALPN)
			assert.Contains(t, h.SupportedVersions, uint16(0x0304))
			assert.NotEmpty(t, h.SignatureAlgorithms)
			assert.NotEmpty(t, h.SupportedGroups)
			assert.Equal(t, tc.ja4, h.JA4())
			hasGREASE := false
			for _, c := range h.CipherSuites {
				hasGREASE = hasGREASE || IsGREASE(c)
			}
			assert.Equal(t, tc.grease, hasGREASE, "GREASE values are kept in the parse")

			// The same hello in records of any size extracts the same way.
			for _, size := range []int{16384, 512, 100, 1} {
				recs := record(msg, size)
				got, ver, n, err := ExtractClientHello(append(recs, 0x17, 0x03)) // plus what follows
				require.NoError(t, err, "size %d", size)
				assert.Equal(t, msg, got)
				assert.Equal(t, uint16(0x0301), ver)
				assert.Equal(t, len(recs), n)
				for _, cut := range []int{0, 1, 4, 5, len(recs) / 2, len(recs) - 1} {
					_, _, _, err := ExtractClientHello(recs[:cut])
					assert.ErrorIs(t, err, ErrIncomplete, "cut at %d", cut)
				}
			}
		})
	}
}

func TestGoClientHello(t *testing.T) {
	recs := goHelloRecords(t, &tls.Config{ServerName: "judge.test", NextProtos: []string{"http/1.1"}, InsecureSkipVerify: true})
	msg, _, n, err := ExtractClientHello(recs)
	require.NoError(t, err)
	assert.Equal(t, len(recs), n)
	h, err := ParseClientHello(msg)
	require.NoError(t, err)
	assert.Equal(t, "judge.test", h.ServerName)
	assert.Regexp(t, `^t13d\d{4}h1_`, h.JA4())

	// Without SNI (an IP address), the JA4 says "i".
	recs = goHelloRecords(t, &tls.Config{ServerName: "127.0.0.1", InsecureSkipVerify: true})
	msg, _, _, err = ExtractClientHello(recs)
	require.NoError(t, err)
	h, err = ParseClientHello(msg)
	require.NoError(t, err)
	assert.Empty(t, h.ServerName)
	assert.Regexp(t, `^t13i\d{4}00_`, h.JA4())
}

func TestExtractClientHelloRejects(t *testing.T) {
	hello := utlsHello(t, utls.HelloChrome_133, "a.example")
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"HTTP", []byte("GET / HTTP/1.1\r\n\r\n"), ErrNotHandshake},
		{"SSLv2-style", []byte{0x80, 0x2e, 0x01, 0x03, 0x01, 0, 0}, ErrNotHandshake},
		{"bad major version", []byte{0x16, 0x02, 0x00, 0x00, 0x01, 0x01}, ErrNotHandshake},
		{"empty record", []byte{0x16, 0x03, 0x01, 0x00, 0x00}, ErrMalformed},
		{"server hello", record([]byte{0x02, 0, 0, 1, 0}, 100), ErrNotClientHello},
		{"two messages in a record", record(append(append([]byte(nil), hello...), 0x01, 0, 0, 0), 1<<14), ErrMalformed},
		{"huge length", []byte{0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x7f, 0xff, 0xff}, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, err := ExtractClientHello(tc.in)
			assert.ErrorIs(t, err, tc.want)
		})
	}
}

func TestParseClientHelloRejects(t *testing.T) {
	hello := utlsHello(t, utls.HelloFirefox_120, "a.example")
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrNotClientHello},
		{"server hello", []byte{0x02, 0, 0, 0}, ErrNotClientHello},
		{"short", hello[:40], ErrMalformed},
		{"trailing bytes", append(append([]byte(nil), hello...), 0), ErrMalformed},
		{"length too long", func() []byte {
			b := append([]byte(nil), hello...)
			b[3]++
			return b
		}(), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseClientHello(tc.in)
			assert.True(t, errors.Is(err, tc.want), "got %v", err)
		})
	}
}

func TestIsGREASE(t *testing.T) {
	for v := 0; v <= 0xffff; v++ {
		want := v&0xff == v>>8 && v&0x0f == 0x0a
		assert.Equal(t, want, IsGREASE(uint16(v)), "%#04x", v)
	}
}

func FuzzParseClientHello(f *testing.F) {
	for _, id := range []utls.ClientHelloID{utls.HelloChrome_133, utls.HelloFirefox_120, utls.HelloSafari_16_0, utls.HelloIOS_14, utls.HelloEdge_85} {
		f.Add(record(utlsHello(f, id, "seed.example"), 16384))
	}
	f.Add(record(utlsHello(f, utls.HelloChrome_133, ""), 300))
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, in []byte) {
		msg, _, n, err := ExtractClientHello(in)
		if err != nil {
			if msg != nil || n != 0 {
				t.Fatalf("error %v with a result", err)
			}
			return
		}
		if n > len(in) || len(msg) > MaxClientHello || len(msg) > n {
			t.Fatalf("took %d of %d bytes for a %d-byte message", n, len(in), len(msg))
		}
		h, err := ParseClientHello(msg)
		if err != nil {
			return
		}
		// Every value parsed came from inside the message.
		if 2*len(h.CipherSuites)+4*len(h.Extensions) > len(msg) {
			t.Fatalf("parsed more than the message holds")
		}
		for _, p := range h.ALPN {
			if !strings.Contains(string(msg), p) {
				t.Fatalf("ALPN %q not in the message", p)
			}
		}
		if !strings.Contains(string(msg), h.ServerName) {
			t.Fatalf("SNI %q not in the message", h.ServerName)
		}
		if ja4 := h.JA4(); !ja4Pattern.MatchString(ja4) {
			t.Fatalf("JA4 %q has the wrong shape", ja4)
		}
		again, err := ParseClientHello(msg)
		if err != nil || again.JA4R() != h.JA4R() {
			t.Fatalf("parsing twice differs: %v", err)
		}
	})
}

// corpusBytes reads the []byte input of a seed corpus file.
func corpusBytes(t *testing.T, target, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "fuzz", target, name))
	require.NoError(t, err)
	lines := strings.Split(string(b), "\n")
	require.Equal(t, "go test fuzz v1", lines[0])
	raw, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	require.NoError(t, err)
	return []byte(raw)
}

// Hellos recorded off the wire (the seed corpus) keep their JA4: Chromium
// 156 on Linux and curl 7.88 with OpenSSL, with and without SNI.
func TestJA4OfRecordedHellos(t *testing.T) {
	for name, want := range map[string]string{
		"chromium-156": "t13d1517h2_8daaf6152771_cb7bf5808d99",
		"curl":         "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6",
		"curl-no-sni":  "t13i3111h2_e8f1e7e78f70_b26ce05bbdd6",
	} {
		t.Run(name, func(t *testing.T) {
			msg, _, _, err := ExtractClientHello(corpusBytes(t, "FuzzParseClientHello", name))
			require.NoError(t, err)
			h, err := ParseClientHello(msg)
			require.NoError(t, err)
			assert.Equal(t, want, h.JA4())
		})
	}
}
