package mitm

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func encode(t *testing.T, coding, text string) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	switch coding {
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "deflate":
		w = zlib.NewWriter(&buf)
	case "raw-deflate":
		fw, err := flate.NewWriter(&buf, flate.DefaultCompression)
		require.NoError(t, err)
		w = fw
	case "br":
		w = brotli.NewWriter(&buf)
	case "zstd":
		zw, err := zstd.NewWriter(&buf)
		require.NoError(t, err)
		w = zw
	}
	_, err := io.WriteString(w, text)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func TestDecodeForClient(t *testing.T) {
	const text = "the quick brown fox jumps over the lazy dog, again and again and again"
	for _, tc := range []struct{ coding, header string }{
		{"gzip", "gzip"}, {"deflate", "deflate"}, {"raw-deflate", "deflate"}, {"br", "br"}, {"zstd", "zstd"},
	} {
		t.Run(tc.coding, func(t *testing.T) {
			body := encode(t, tc.coding, text)
			resp := &http.Response{Header: http.Header{"Content-Encoding": {tc.header}, "Content-Length": {"9"}},
				Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))}
			decodeForClient(resp, "")
			assert.Empty(t, resp.Header.Get("Content-Encoding"))
			assert.Empty(t, resp.Header.Get("Content-Length"))
			assert.EqualValues(t, -1, resp.ContentLength)
			got, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.NoError(t, resp.Body.Close())
			assert.Equal(t, text, string(got))

			// A client that accepts the coding gets the bytes as they came.
			resp = &http.Response{Header: http.Header{"Content-Encoding": {tc.header}}, Body: io.NopCloser(bytes.NewReader(body))}
			decodeForClient(resp, "gzip, deflate, br, zstd")
			raw, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, body, raw)
		})
	}
}

func TestDecodeLeavesUnknownAndStackedCodings(t *testing.T) {
	for _, ce := range [][]string{{"compress"}, {"gzip, br"}, {"gzip", "br"}} {
		resp := &http.Response{Header: http.Header{"Content-Encoding": ce}, Body: io.NopCloser(strings.NewReader("x"))}
		decodeForClient(resp, "")
		assert.Equal(t, ce, resp.Header.Values("Content-Encoding"))
	}
	resp := &http.Response{Header: http.Header{"Content-Encoding": {"gzip"}}, Body: io.NopCloser(strings.NewReader("not gzip"))}
	decodeForClient(resp, "")
	_, err := io.ReadAll(resp.Body)
	assert.Error(t, err, "a corrupt body fails the read, which aborts the response")
	require.NoError(t, resp.Body.Close())
}
