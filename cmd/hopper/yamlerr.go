package main

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// yamlSyntaxError renders a YAML syntax error as one line naming the line at
// fault. The YAML library names it in most errors ("line 3: ..."), but not
// for a problem on the first line, nor for bytes YAML does not allow
// (control characters, invalid UTF-8); for those the line is found here.
func yamlSyntaxError(path string, data []byte, err error) error {
	msg := strings.ReplaceAll(strings.TrimPrefix(err.Error(), "yaml: "), "\n", " ")
	if strings.HasPrefix(msg, "line ") {
		return usagef("%s: %s", path, msg)
	}
	return usagef("%s:%d: %s", path, badByteLine(data), msg)
}

// badByteLine returns the 1-based line of the first byte YAML does not allow
// in a stream (YAML 1.2 §5.1), or 1 when there is none.
func badByteLine(data []byte) int {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	line := 1
	for len(data) > 0 {
		r, size := utf8.DecodeRune(data)
		if (r == utf8.RuneError && size == 1) || !yamlPrintable(r) {
			return line
		}
		if r == '\n' {
			line++
		}
		data = data[size:]
	}
	return 1
}

func yamlPrintable(r rune) bool {
	switch {
	case r == '\t', r == '\n', r == '\r', r == 0x85:
		return true
	case r >= 0x20 && r <= 0x7e:
		return true
	case r >= 0xa0 && r <= 0xd7ff, r >= 0xe000 && r <= 0xfffd, r >= 0x10000 && r <= 0x10ffff:
		return r != 0xfeff
	}
	return false
}
