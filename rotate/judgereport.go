package rotate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/textproto"
	"strings"
)

// ErrJudgeFormat is wrapped by ParseJudgeReport when an answer is in none
// of the formats judges use (a captive portal's HTML page, an error page).
var ErrJudgeFormat = errors.New("judge answer has no address")

// ParseJudgeReport reads a judge's answer in any of the formats proxy judges
// use, so users can keep the judges their other tools use:
//
//   - JSON: `hopper judge`'s {"ip": ..., "headers": {name: [values]}}, and
//     httpbin-style {"origin": "a, b", "headers": {name: "value"}} (the
//     exit is the last address of "origin");
//   - an environment dump, as azenv.php and its copies print it, in HTML or
//     plain text: "REMOTE_ADDR = 203.0.113.7" and one HTTP_* line per
//     request header ("HTTP_X_FORWARDED_FOR = ...");
//   - a bare address, as ipify, icanhazip and ifconfig.me answer: the exit
//     address alone, the headers unknown (HeadersUnknown).
func ParseJudgeReport(body []byte) (JudgeReport, error) {
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '{' {
		return parseJSONReport(body)
	}
	if ip, err := netip.ParseAddr(string(body)); err == nil {
		return JudgeReport{IP: ip.Unmap().String(), HeadersUnknown: true}, nil
	}
	return parseEnvReport(body)
}

// jsonReport is the union of the JSON judge formats; header values are a
// list (hopper judge) or a single string (httpbin).
type jsonReport struct {
	IP      string                     `json:"ip"`
	Origin  string                     `json:"origin"`
	Headers map[string]json.RawMessage `json:"headers"`
}

func parseJSONReport(body []byte) (JudgeReport, error) {
	var j jsonReport
	if err := json.Unmarshal(body, &j); err != nil {
		return JudgeReport{}, fmt.Errorf("%w: bad JSON: %w", ErrJudgeFormat, err)
	}
	ip := strings.TrimSpace(j.IP)
	if ip == "" && j.Origin != "" {
		parts := strings.Split(j.Origin, ",")
		ip = strings.TrimSpace(parts[len(parts)-1])
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return JudgeReport{}, fmt.Errorf("%w: no valid \"ip\" or \"origin\" in the JSON", ErrJudgeFormat)
	}
	rep := JudgeReport{IP: addr.Unmap().String(), HeadersUnknown: j.Headers == nil}
	if j.Headers != nil {
		rep.Headers = make(http.Header, len(j.Headers))
	}
	for name, raw := range j.Headers {
		var list []string
		if err := json.Unmarshal(raw, &list); err != nil {
			var one string
			if err := json.Unmarshal(raw, &one); err != nil {
				return JudgeReport{}, fmt.Errorf("%w: header %q is neither a string nor a list of strings", ErrJudgeFormat, name)
			}
			list = []string{one}
		}
		key := textproto.CanonicalMIMEHeaderKey(name)
		rep.Headers[key] = append(rep.Headers[key], list...)
	}
	return rep, nil
}

// parseEnvReport reads "NAME = value" lines, ignoring HTML tags around
// them.
func parseEnvReport(body []byte) (JudgeReport, error) {
	var rep JudgeReport
	var headers http.Header
	for line := range strings.SplitSeq(string(body), "\n") {
		name, value, ok := strings.Cut(stripTags(line), "=")
		if !ok {
			continue
		}
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !isEnvName(name) {
			continue
		}
		switch {
		case name == "REMOTE_ADDR":
			rep.IP = value
		case strings.HasPrefix(name, "HTTP_") && len(name) > len("HTTP_"):
			if headers == nil {
				headers = make(http.Header)
			}
			key := textproto.CanonicalMIMEHeaderKey(strings.ReplaceAll(name[len("HTTP_"):], "_", "-"))
			headers[key] = append(headers[key], value)
		}
	}
	addr, err := netip.ParseAddr(rep.IP)
	if err != nil {
		return JudgeReport{}, fmt.Errorf("%w: not JSON, an address or a REMOTE_ADDR line", ErrJudgeFormat)
	}
	rep.IP = addr.Unmap().String()
	// A dump shows every header the judge got (HTTP_HOST at least); one
	// without any did not show them.
	rep.Headers, rep.HeadersUnknown = headers, headers == nil
	return rep, nil
}

// stripTags drops HTML tags ("<pre>", "<br>") from one line.
func stripTags(line string) string {
	if !strings.Contains(line, "<") {
		return line
	}
	var b strings.Builder
	in := false
	for _, r := range line {
		switch {
		case r == '<':
			in = true
		case r == '>' && in:
			in = false
		case !in:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// isEnvName reports a CGI variable name: upper-case letters, digits and
// underscores, starting with a letter.
func isEnvName(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
