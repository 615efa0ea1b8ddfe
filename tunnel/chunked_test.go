package tunnel

import (
	"bytes"
	"net/http/httputil"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var chunkCases = []struct {
	in   string
	n    int // bytes of the body; -1: malformed
	done bool
}{
	{"0\r\n\r\n", 5, true},
	{"0\r\n\r\nGET / HTTP/1.1", 5, true},
	{"5\r\nhello\r\n0\r\n\r\n", 15, true},
	{"5;ext=1\r\nhello\r\n0\r\n\r\n", 21, true},
	{"5 ;x\r\nhello\r\n0\r\n\r\n", 18, true},
	{"A\r\n0123456789\r\n0\r\nTrailer: x\r\nB: y\r\n\r\nnext", 38, true},
	{"5\nhello\n0\n\n", 11, true},
	{"5\r\nhel", 6, false},
	{"5\r\nhello\r\n", 10, false},
	{"0\r\nTrailer: x\r\n", 15, false},
	{"", 0, false},
	{"x\r\n", -1, false},
	{"\r\n", -1, false},
	{"5\r\nhelloX", -1, false},
	{"5\rX", -1, false},
	{"1000000000000000\r\n", -1, false},
	{"5;\x01\r\n", -1, false},
	{"0\r\n\rX", -1, false},
}

func TestChunkScanner(t *testing.T) {
	for _, c := range chunkCases {
		var s chunkScanner
		n, done, err := s.scan([]byte(c.in))
		if c.n < 0 {
			assert.ErrorIs(t, err, errBadChunk, "%q", c.in)
			continue
		}
		require.NoError(t, err, "%q", c.in)
		assert.Equal(t, c.n, n, "%q", c.in)
		assert.Equal(t, c.done, done, "%q", c.in)
	}
}

// Bodies written by Go's own chunked writer, fed in pieces of every size,
// end exactly where they should.
func TestChunkScannerSplits(t *testing.T) {
	var body bytes.Buffer
	w := httputil.NewChunkedWriter(&body)
	for i := 1; i < 20; i++ {
		_, _ = w.Write(bytes.Repeat([]byte{byte(i)}, i*37))
	}
	_ = w.Close()
	body.WriteString("X-Sum: 1\r\n\r\n")
	whole := body.Len()
	body.WriteString("next request")
	for step := 1; step < 64; step++ {
		var s chunkScanner
		total, done := 0, false
		b := body.Bytes()
		for pos := 0; pos < len(b) && !done; pos += step {
			n, d, err := s.scan(b[pos:min(pos+step, len(b))])
			require.NoError(t, err)
			total += n
			done = d
			if d {
				break
			}
			require.Equal(t, min(step, len(b)-pos), n)
		}
		assert.True(t, done, "step %d", step)
		assert.Equal(t, whole, total, "step %d", step)
	}
}

func TestChunkScannerDataLeft(t *testing.T) {
	var s chunkScanner
	n, done, err := s.scan([]byte("100000\r\nab"))
	require.NoError(t, err)
	assert.False(t, done)
	assert.Equal(t, 10, n)
	assert.Equal(t, int64(0x100000-2), s.dataLeft())
	s.skipData(s.dataLeft())
	n, done, err = s.scan([]byte("\r\n0\r\n\r\n"))
	require.NoError(t, err)
	assert.True(t, done)
	assert.Equal(t, 7, n)
}

// FuzzChunkScanner checks that scanning a body in two pieces agrees with
// scanning it whole, and that the scanner never consumes past the end.
func FuzzChunkScanner(f *testing.F) {
	for _, c := range chunkCases {
		f.Add([]byte(c.in), uint8(len(c.in)/2))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint8) {
		var whole chunkScanner
		n, done, err := whole.scan(data)
		if n > len(data) || n < 0 {
			t.Fatalf("consumed %d of %d", n, len(data))
		}
		if err != nil {
			return
		}
		k := min(int(cut), len(data))
		var split chunkScanner
		n1, done1, err1 := split.scan(data[:k])
		if err1 != nil {
			t.Fatalf("prefix failed where whole did not: %v", err1)
		}
		total, d := n1, done1
		if !done1 {
			n2, done2, err2 := split.scan(data[k:])
			if err2 != nil {
				t.Fatalf("split failed where whole did not: %v", err2)
			}
			total, d = n1+n2, done2
		}
		if total != n || d != done {
			t.Fatalf("whole (%d,%v) split at %d (%d,%v)", n, done, k, total, d)
		}
	})
}
