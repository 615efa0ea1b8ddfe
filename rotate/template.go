package rotate

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/hopper-proxy/hopper/dial"
)

// ErrTemplateValue is a session or country from the client that cannot be
// put into an upstream entry's placeholders: only letters, digits, '.', '_'
// and '-' are allowed, up to 64 bytes. It is the client's fault and is not
// retried.
var ErrTemplateValue = errors.New("session or country unusable in an upstream template")

const maxTemplateValue = 64

// fill holds the values of one connection's placeholders. The session is
// drawn lazily, once, so that user, password and host agree.
type fill struct {
	session, country string
	drawn            bool
}

func newFill(req *dial.Request) (fill, error) {
	for _, v := range [...]string{req.Session, req.Country} {
		if !validTemplateValue(v) {
			return fill{}, fmt.Errorf("%w: %q", ErrTemplateValue, truncate(v, maxTemplateValue))
		}
	}
	return fill{session: req.Session, country: req.Country, drawn: req.Session != ""}, nil
}

func (f *fill) expand(s string) string {
	if !strings.ContainsRune(s, '{') {
		return s
	}
	if strings.Contains(s, PlaceholderSession) {
		if !f.drawn {
			f.session, f.drawn = NewSessionID(), true
		}
		s = strings.ReplaceAll(s, PlaceholderSession, f.session)
	}
	return strings.ReplaceAll(s, PlaceholderCountry, f.country)
}

// NewSessionID returns a fresh random session id (12 lower-case letters and
// digits), as filled into {session} for a request that names none.
func NewSessionID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	var b [12]byte
	for i := range b {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	return string(b[:])
}

func validTemplateValue(v string) bool {
	if len(v) > maxTemplateValue {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
