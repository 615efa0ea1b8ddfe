package rotate

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxLineLen bounds one list line; longer lines are reported and skipped.
const maxLineLen = 8 << 10

// LineError is a list line that could not be used. Its text is
// "file:line: why" and never contains the line's credentials.
type LineError struct {
	File string // source name as given to ParseList
	Line int    // 1-based
	Err  error  // wraps ErrInvalidEntry for a bad entry
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }

func (e *LineError) Unwrap() error { return e.Err }

// ErrLineTooLong is a list line longer than 8 KiB.
var ErrLineTooLong = errors.New("line too long")

// ParseList reads one entry per line from r: '#' at the start of a line or
// after white space starts a comment, blank lines are ignored, and CRLF line
// ends and a leading UTF-8 BOM are accepted. Bad lines are skipped and
// reported as *LineError values named after name; a read error ends the list
// and is returned last (not as a LineError). Entries are returned in order,
// duplicates included.
func ParseList(name string, r io.Reader) (ups []*Upstream, errs []error) {
	br := bufio.NewReaderSize(r, 4096)
	for lineNo := 1; ; lineNo++ {
		line, tooLong, err := readLine(br)
		if lineNo == 1 {
			line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf"))
		}
		if tooLong {
			errs = append(errs, &LineError{File: name, Line: lineNo, Err: ErrLineTooLong})
		} else if text := stripComment(string(line)); text != "" {
			e, perr := ParseEntry(text)
			if perr != nil {
				errs = append(errs, &LineError{File: name, Line: lineNo, Err: perr})
			} else {
				ups = append(ups, NewUpstream(e))
			}
		}
		if err == io.EOF {
			return ups, errs
		}
		if err != nil {
			return ups, append(errs, fmt.Errorf("read %s: %w", name, err))
		}
	}
}

// readLine returns the next line without its end; tooLong reports a line
// over maxLineLen, whose text is then discarded up to its end.
func readLine(br *bufio.Reader) (line []byte, tooLong bool, err error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(chunk) > maxLineLen+2 {
				tooLong, buf = true, nil
			} else {
				buf = append(buf, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if tooLong {
			return nil, true, err
		}
		return bytes.TrimRight(buf, "\r\n"), false, err
	}
}

// stripComment removes a comment ('#' at the start or after white space)
// and surrounding white space. A '#' inside an entry (a password) is kept.
func stripComment(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '#' && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t') {
			s = s[:i]
			break
		}
	}
	return strings.TrimSpace(s)
}
