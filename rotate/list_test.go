package rotate

import (
	"errors"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseList(t *testing.T) {
	list := "\xef\xbb\xbf# provider list\r\n" +
		"http://u:p@a.example:8080   # first\r\n" +
		"\n" +
		"   \t\n" +
		"b.example:3128\n" +
		"ftp://c.example:21\n" + // line 6: bad scheme
		"1.2.3.4:3128:alice:pa#ss\n" +
		"c.example\n" + // line 8: missing port
		"direct://127.0.0.2 # egress\n" +
		"socks5h://d.example:1080" // no final newline
	ups, errs := ParseList("lists/resi.txt", strings.NewReader(list))
	var labels []string
	for _, u := range ups {
		labels = append(labels, u.Label())
	}
	assert.Equal(t, []string{
		"http://u:***@a.example:8080", "http://b.example:3128", "http://alice:***@1.2.3.4:3128",
		"direct@127.0.0.2", "socks5h://d.example:1080",
	}, labels)
	assert.Equal(t, "pa#ss", ups[2].Entry().Pass, "a '#' inside an entry is not a comment")
	require.Len(t, errs, 2)
	var le *LineError
	require.True(t, errors.As(errs[0], &le))
	assert.Equal(t, "lists/resi.txt", le.File)
	assert.Equal(t, 6, le.Line)
	assert.True(t, errors.Is(errs[0], ErrInvalidEntry))
	assert.True(t, strings.HasPrefix(errs[0].Error(), "lists/resi.txt:6: "), errs[0].Error())
	assert.True(t, strings.HasPrefix(errs[1].Error(), "lists/resi.txt:8: "), errs[1].Error())
}

func TestParseListLongLineAndReadError(t *testing.T) {
	list := "a.example:1\n" + strings.Repeat("x", 3*maxLineLen) + "\nb.example:2\n"
	ups, errs := ParseList("big", strings.NewReader(list))
	require.Len(t, ups, 2)
	require.Len(t, errs, 1)
	assert.True(t, errors.Is(errs[0], ErrLineTooLong))
	assert.Equal(t, "big:2: line too long", errs[0].Error())

	ups, errs = ParseList("broken", iotest.TimeoutReader(strings.NewReader("a.example:1\n")))
	// TimeoutReader fails the second read: the first line arrives, then an error.
	require.Len(t, ups, 1)
	require.Len(t, errs, 1)
	assert.True(t, errors.Is(errs[0], iotest.ErrTimeout))
	var le *LineError
	assert.False(t, errors.As(errs[0], &le), "a read error is not a line error")
}
