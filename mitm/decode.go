package mitm

import (
	"bufio"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// The profile's Accept-Encoding replaces the client's, so an origin may
// answer with a coding the client never asked for (br to curl, say). Such a
// body is decoded on the way back, streaming, and the response loses its
// Content-Encoding and Content-Length; a coding the client accepts passes
// through untouched.

// decodeForClient rewrites resp when its single content coding is one the
// client's Accept-Encoding (clientAE, "" when it sent none) does not accept
// and hopper can decode (gzip, deflate, br, zstd).
func decodeForClient(resp *http.Response, clientAE string) {
	ce := resp.Header.Values("Content-Encoding")
	if len(ce) != 1 || strings.Contains(ce[0], ",") {
		return
	}
	coding := strings.ToLower(strings.TrimSpace(ce[0]))
	switch coding {
	case "gzip", "x-gzip", "deflate", "br", "zstd":
	default:
		return
	}
	if acceptsCoding(clientAE, coding) || resp.Body == nil || resp.Body == http.NoBody {
		return
	}
	resp.Body = &decodedBody{src: resp.Body, coding: coding}
	resp.Header.Del("Content-Encoding")
	resp.Header.Del("Content-Length")
	resp.ContentLength = -1
	resp.Uncompressed = true
}

// acceptsCoding reports whether an Accept-Encoding value (RFC 9110 §12.5.3)
// accepts coding with a non-zero weight, by name or through "*". An absent
// header accepts nothing here: clients that send none (curl without
// --compressed) cannot decode.
func acceptsCoding(accept, coding string) bool {
	if coding == "x-gzip" {
		coding = "gzip"
	}
	star := false
	for _, part := range strings.Split(accept, ",") {
		name, params, _ := strings.Cut(part, ";")
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "x-gzip" {
			name = "gzip"
		}
		if name != coding && name != "*" {
			continue
		}
		ok := qNonZero(params)
		if name == coding {
			return ok
		}
		star = ok
	}
	return star
}

// qNonZero reads the q parameter of an Accept-Encoding element; absent or
// unparsable means 1.
func qNonZero(params string) bool {
	for _, p := range strings.Split(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		return err != nil || q > 0
	}
	return true
}

// decodedBody decodes src lazily: the decoder reads the first bytes only
// when the body is first read, never inside RoundTrip.
type decodedBody struct {
	src    io.ReadCloser
	coding string
	dec    io.Reader
	closer func()
	err    error
}

func (d *decodedBody) Read(p []byte) (int, error) {
	if d.dec == nil && d.err == nil {
		d.dec, d.closer, d.err = newDecoder(d.coding, d.src)
	}
	if d.err != nil {
		return 0, d.err
	}
	return d.dec.Read(p)
}

func (d *decodedBody) Close() error {
	if d.closer != nil {
		d.closer()
	}
	return d.src.Close()
}

func newDecoder(coding string, r io.Reader) (io.Reader, func(), error) {
	switch coding {
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() { _ = zr.Close() }, nil
	case "deflate":
		// "deflate" is zlib-wrapped by the RFC but raw in some servers' hands.
		return newDeflateReader(r)
	case "br":
		return brotli.NewReader(r), nil, nil
	case "zstd":
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	}
	return r, nil, nil
}

// newDeflateReader reads zlib (RFC 1950) or, when the stream lacks the zlib
// header, raw deflate (RFC 1951).
func newDeflateReader(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReader(r)
	hdr, err := br.Peek(2)
	if err == nil && hdr[0]&0x0f == 8 && (uint16(hdr[0])<<8|uint16(hdr[1]))%31 == 0 {
		zr, err := zlib.NewReader(br)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() { _ = zr.Close() }, nil
	}
	fr := flate.NewReader(br)
	return fr, func() { _ = fr.Close() }, nil
}
