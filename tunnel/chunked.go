package tunnel

import (
	"errors"
)

// errBadChunk is a malformed chunked body (RFC 9112 §7.1).
var errBadChunk = errors.New("malformed chunked body")

const (
	maxChunkLine    = 4 << 10  // chunk-size line, extensions included
	maxTrailerBytes = 64 << 10 // the trailer section
)

type chunkState uint8

const (
	chunkSize      chunkState = iota // hex digits of chunk-size
	chunkExt                         // chunk extensions up to the line end
	chunkSizeLF                      // CR seen, LF expected
	chunkData                        // chunk-data
	chunkDataCR                      // CRLF expected after chunk-data
	chunkDataLF                      // CR seen after chunk-data
	chunkLineStart                   // start of a trailer field or the final empty line
	chunkTrailer                     // inside a trailer field line
	chunkEndLF                       // CR of the final empty line seen
	chunkDone
)

// chunkScanner finds the end of a chunked body that is passed through
// unchanged: it reads the framing only to know how many bytes belong to the
// message, so a proxy can copy them verbatim without buffering a whole body.
// The zero value is ready for a new body.
type chunkScanner struct {
	state    chunkState
	size     int64 // chunk-size being read, then chunk-data left
	digits   int
	line     int // bytes of the current size line
	trailers int // bytes of trailer section so far
}

// scan consumes the start of b and reports how many bytes belong to the
// body and whether they complete it. It never consumes past the body's end.
func (s *chunkScanner) scan(b []byte) (n int, done bool, err error) {
	for n < len(b) {
		if s.state == chunkData {
			k := int64(len(b) - n)
			if k > s.size {
				k = s.size
			}
			n += int(k)
			s.size -= k
			if s.size == 0 {
				s.state = chunkDataCR
			}
			continue
		}
		c := b[n]
		n++
		switch s.state {
		case chunkSize:
			if v, ok := unhex(c); ok {
				if s.digits == 15 {
					return n, false, errBadChunk
				}
				s.size = s.size<<4 | int64(v)
				s.digits++
				s.line++
				continue
			}
			if s.digits == 0 {
				return n, false, errBadChunk
			}
			if err := s.endOfSize(c); err != nil {
				return n, false, err
			}
		case chunkExt:
			s.line++
			if s.line > maxChunkLine {
				return n, false, errBadChunk
			}
			if err := s.endOfSize(c); err != nil {
				return n, false, err
			}
		case chunkSizeLF:
			if c != '\n' {
				return n, false, errBadChunk
			}
			s.startData()
		case chunkDataCR:
			switch c {
			case '\r':
				s.state = chunkDataLF
			case '\n':
				s.state = chunkSize
			default:
				return n, false, errBadChunk
			}
		case chunkDataLF:
			if c != '\n' {
				return n, false, errBadChunk
			}
			s.state = chunkSize
		case chunkLineStart, chunkTrailer:
			s.trailers++
			if s.trailers > maxTrailerBytes {
				return n, false, errBadChunk
			}
			switch {
			case c == '\n' && s.state == chunkLineStart:
				s.state = chunkDone
				return n, true, nil
			case c == '\r' && s.state == chunkLineStart:
				s.state = chunkEndLF
			case c == '\n':
				s.state = chunkLineStart
			default:
				s.state = chunkTrailer
			}
		case chunkEndLF:
			if c != '\n' {
				return n, false, errBadChunk
			}
			s.state = chunkDone
			return n, true, nil
		case chunkDone:
			return n - 1, true, nil
		}
	}
	return n, s.state == chunkDone, nil
}

// endOfSize handles a byte after the chunk-size digits: extensions (after
// ';' or whitespace), CR, or LF.
func (s *chunkScanner) endOfSize(c byte) error {
	switch {
	case c == '\r':
		s.state = chunkSizeLF
	case c == '\n':
		s.startData()
	case s.state == chunkSize && (c == ';' || c == ' ' || c == '\t'):
		s.state = chunkExt
	case s.state == chunkExt && (c == '\t' || !isCTL(c)):
	default:
		return errBadChunk
	}
	return nil
}

// startData begins a chunk's data, or the trailer section after the last
// chunk.
func (s *chunkScanner) startData() {
	s.digits, s.line = 0, 0
	if s.size == 0 {
		s.state = chunkLineStart
		return
	}
	s.state = chunkData
}

// dataLeft returns how many bytes of chunk-data follow without framing, so a
// large chunk can be copied without looking at it.
func (s *chunkScanner) dataLeft() int64 {
	if s.state == chunkData {
		return s.size
	}
	return 0
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// skipData records that n bytes of chunk-data were copied without scanning.
func (s *chunkScanner) skipData(n int64) {
	s.size -= n
	if s.size == 0 {
		s.state = chunkDataCR
	}
}
