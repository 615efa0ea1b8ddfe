package dial

import "strings"

// Username is a proxy username split into the account and the client
// controls it carries: "alice-session-42-country-us" names account "alice",
// session "42" and country "us". Keys may come in any order; a value runs to
// the next key, so session IDs may contain hyphens.
type Username struct {
	Base    string
	Session string
	Country string
}

// ParseUsername splits raw per the grammar above. It never fails: a name
// without controls is all Base. Country is lower-cased.
func ParseUsername(raw string) Username {
	var u Username
	rest := raw
	base, rest, found := cutControl(rest)
	u.Base = base
	for found {
		var key string
		key, rest, _ = strings.Cut(rest, "-")
		var val string
		val, rest, found = cutControl(rest)
		switch asciiLower(key) {
		case "session":
			u.Session = val
		case "country":
			u.Country = strings.ToLower(val)
		}
	}
	return u
}

// cutControl returns the text before the first "-session-" or "-country-"
// in s, and s from that key on (without the leading hyphen). Keys match in
// any letter case, so a value never contains one and rendering is stable.
func cutControl(s string) (before, after string, found bool) {
	folded := asciiLower(s)
	best := -1
	for _, k := range [...]string{"-session-", "-country-"} {
		if i := strings.Index(folded, k); i >= 0 && (best < 0 || i < best) {
			best = i
		}
	}
	if best < 0 {
		return s, "", false
	}
	return s[:best], s[best+1:], true
}

// asciiLower lower-cases ASCII letters only, keeping byte offsets intact.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// String renders u back into the grammar ParseUsername reads.
func (u Username) String() string {
	var b strings.Builder
	b.WriteString(u.Base)
	if u.Session != "" {
		b.WriteString("-session-")
		b.WriteString(u.Session)
	}
	if u.Country != "" {
		b.WriteString("-country-")
		b.WriteString(u.Country)
	}
	return b.String()
}
