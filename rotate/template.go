package rotate

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"

	"github.com/hopper-proxy/hopper/dial"
)

// Template placeholders an entry's user, password or host may contain. They
// are filled per connection:
//
//   - {session}: 12 lower-case letters and digits, for gateways that pick the
//     exit IP by a session id (BrightData -session-, Oxylabs -sessid-,
//     Smartproxy -session-);
//   - {session-digits}: the same session as 9 digits, for gateways that want a
//     number (NetNut -sid-);
//   - {country}: the client's -country-CC control, lower case. When the client
//     names none, a "-KEY-" right before the placeholder goes with it
//     ("user-country-{country}-session-x" becomes "user-session-x"), unless the
//     placeholder carries a default: {country|any} becomes "any".
//
// A connection without a sticky session gets a fresh session every time, so
// the gateway hands out a new exit each time; a sticky session gets the same
// one for as long as it stays on the upstream, derived from the client's
// session id (so it also survives a restart), and a new one when it moves.
const (
	PlaceholderSession       = "{session}"
	PlaceholderSessionDigits = "{session-digits}"
	PlaceholderCountry       = "{country}"
)

// ErrTemplateValue is a country from the client that cannot be put into an
// upstream entry's placeholders: only letters, digits, '.', '_' and '-' are
// allowed, up to 64 bytes. It is the client's fault and is not retried.
var ErrTemplateValue = errors.New("country unusable in an upstream template")

const maxTemplateValue = 64

// placeholder is one {...} token found in an entry field.
type placeholder struct {
	start, end int    // s[start:end] is the token
	name       string // "session", "session-digits" or "country"
	def        string // default after '|', country only
}

// nextPlaceholder finds the first placeholder in s at or after from.
func nextPlaceholder(s string, from int) (placeholder, bool) {
	for i := from; i < len(s); i++ {
		if s[i] != '{' {
			continue
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return placeholder{}, false
		}
		body := s[i+1 : i+j]
		name, def, hasDef := strings.Cut(body, "|")
		switch {
		case (name == "session" || name == "session-digits") && !hasDef,
			name == "country" && !hasDef,
			name == "country" && def != "" && len(def) <= 32 && validTemplateValue(def):
			return placeholder{start: i, end: i + j + 1, name: name, def: def}, true
		}
	}
	return placeholder{}, false
}

// hasPlaceholder reports whether s contains a placeholder.
func hasPlaceholder(s string) bool {
	_, ok := nextPlaceholder(s, 0)
	return ok
}

// withoutPlaceholders replaces every placeholder in s by repl.
func withoutPlaceholders(s, repl string) string {
	var b strings.Builder
	last := 0
	for {
		ph, ok := nextPlaceholder(s, last)
		if !ok {
			break
		}
		b.WriteString(s[last:ph.start])
		b.WriteString(repl)
		last = ph.end
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// fill holds the values of one connection's placeholders. A zero seed is
// drawn lazily, once, so that user, password and host agree.
type fill struct {
	seed    uint64
	country string
}

func newFill(seed uint64, req *dial.Request) (fill, error) {
	if !validTemplateValue(req.Country) {
		return fill{}, fmt.Errorf("%w: %q", ErrTemplateValue, truncate(req.Country, maxTemplateValue))
	}
	return fill{seed: seed, country: strings.ToLower(req.Country)}, nil
}

func (f *fill) expand(s string) string {
	ph, ok := nextPlaceholder(s, 0)
	if !ok {
		return s
	}
	var b strings.Builder
	last := 0
	for ; ok; ph, ok = nextPlaceholder(s, last) {
		b.WriteString(s[last:ph.start])
		last = ph.end
		switch ph.name {
		case "session", "session-digits":
			if f.seed == 0 {
				f.seed = freshSeed()
			}
			if ph.name == "session" {
				b.WriteString(sessionAlnum(f.seed))
			} else {
				b.WriteString(sessionDigits(f.seed))
			}
		case "country":
			switch {
			case f.country != "":
				b.WriteString(f.country)
			case ph.def != "":
				b.WriteString(ph.def)
			default:
				dropKey(&b)
			}
		}
	}
	b.WriteString(s[last:])
	return b.String()
}

// dropKey removes a trailing "-KEY-" (KEY: letters, digits, '_') from b.
func dropKey(b *strings.Builder) {
	s := b.String()
	if !strings.HasSuffix(s, "-") {
		return
	}
	i := len(s) - 2
	for i >= 0 && isKeyChar(s[i]) {
		i--
	}
	if i < 0 || i == len(s)-2 || s[i] != '-' {
		return
	}
	b.Reset()
	b.WriteString(s[:i])
}

func isKeyChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_'
}

func freshSeed() uint64 {
	for {
		if s := rand.Uint64(); s != 0 {
			return s
		}
	}
}

// stickySeed derives a sticky session's template seed from who asked, which
// session and country, and how often the session has moved.
func stickySeed(k sessionKey, gen uint32) uint64 {
	h := fnv.New64a()
	for _, s := range [...]string{k.user, k.id, k.country} {
		_, _ = h.Write([]byte(s))
		_, _ = h.Write([]byte{0})
	}
	_, _ = h.Write([]byte{byte(gen), byte(gen >> 8), byte(gen >> 16), byte(gen >> 24)})
	return h.Sum64() | 1
}

const sessionAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// sessionAlnum renders a seed as 12 lower-case letters and digits.
func sessionAlnum(seed uint64) string {
	var b [12]byte
	for i := range b {
		b[i] = sessionAlphabet[seed%36]
		seed /= 36
	}
	return string(b[:])
}

// sessionDigits renders a seed as 9 digits without a leading zero.
func sessionDigits(seed uint64) string {
	return fmt.Sprint(100_000_000 + seed%900_000_000)
}

// NewSessionID returns a fresh random session id (12 lower-case letters and
// digits), as filled into {session} for a connection without a sticky session.
func NewSessionID() string { return sessionAlnum(freshSeed()) }

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
