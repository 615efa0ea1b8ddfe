package fingerprint

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// JA4 is the ClientHello's JA4 fingerprint over TCP, per the FoxIO
// specification (github.com/FoxIO-LLC/ja4, technical_details/JA4.md):
//
//	t13d1516h2_8daaf6152771_d8a2da3f94cd
//	│││ │ │ │  │            └ SHA-256 of the sorted extensions (without SNI
//	│││ │ │ │  │              and ALPN), "_", the signature algorithms in
//	│││ │ │ │  │              order; first 12 hex digits
//	│││ │ │ │  └ SHA-256 of the sorted cipher suites; first 12 hex digits
//	│││ │ │ └ first and last character of the first ALPN value ("00": none)
//	│││ │ └ number of extensions (two digits, at most 99)
//	│││ └ number of cipher suites
//	││└ "d" when the SNI extension is present, "i" when not
//	│└ highest TLS version offered ("13", "12", ...)
//	└ "t" for TCP ("q" for QUIC, which hopper does not see)
//
// GREASE values are ignored everywhere; values are four lower-case hex
// digits joined by commas.
func (h *ClientHello) JA4() string {
	a, ciphers, exts, sigs := h.ja4Parts()
	return a + "_" + hash12(ciphers) + "_" + hash12(joinExtSigs(exts, sigs))
}

// JA4R is JA4 with the lists themselves in place of their hashes (JA4_r),
// which shows what differs when two JA4s do.
func (h *ClientHello) JA4R() string {
	a, ciphers, exts, sigs := h.ja4Parts()
	out := a + "_" + ciphers + "_" + exts
	if sigs != "" {
		out += "_" + sigs
	}
	return out
}

func (h *ClientHello) ja4Parts() (a, ciphers, exts, sigs string) {
	cs := withoutGREASE(h.CipherSuites)
	es := withoutGREASE(h.Extensions)
	sni := "i"
	if slices.Contains(es, ExtServerName) {
		sni = "d"
	}
	a = fmt.Sprintf("t%s%s%02d%02d%s", h.ja4Version(), sni, min(len(cs), 99), min(len(es), 99), ja4ALPN(h.ALPN))

	slices.Sort(cs)
	ciphers = hexList(cs)
	sorted := make([]uint16, 0, len(es))
	for _, e := range es {
		if e != ExtServerName && e != ExtALPN {
			sorted = append(sorted, e)
		}
	}
	slices.Sort(sorted)
	exts = hexList(sorted)
	sigs = hexList(withoutGREASE(h.SignatureAlgorithms))
	return a, ciphers, exts, sigs
}

// ja4Version names the highest version in supported_versions, or the
// message's legacy version when the extension is absent.
func (h *ClientHello) ja4Version() string {
	v := h.Version
	if vs := withoutGREASE(h.SupportedVersions); len(vs) > 0 {
		v = slices.Max(vs)
	}
	switch v {
	case 0x0304:
		return "13"
	case 0x0303:
		return "12"
	case 0x0302:
		return "11"
	case 0x0301:
		return "10"
	case 0x0300:
		return "s3"
	case 0x0002:
		return "s2"
	case 0xfeff:
		return "d1"
	case 0xfefd:
		return "d2"
	case 0xfefc:
		return "d3"
	}
	return "00"
}

// ja4ALPN is the first and last character of the first ALPN value, or the
// first and last hex digit of its bytes when either is not alphanumeric.
func ja4ALPN(alpn []string) string {
	if len(alpn) == 0 || alpn[0] == "" {
		return "00"
	}
	p := alpn[0]
	first, last := p[0], p[len(p)-1]
	if alnum(first) && alnum(last) {
		return string([]byte{first, last})
	}
	x := hex.EncodeToString([]byte{first, last})
	return string([]byte{x[0], x[3]})
}

func alnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func withoutGREASE(vs []uint16) []uint16 {
	out := make([]uint16, 0, len(vs))
	for _, v := range vs {
		if !IsGREASE(v) {
			out = append(out, v)
		}
	}
	return out
}

func hexList(vs []uint16) string {
	var b strings.Builder
	for i, v := range vs {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%04x", v)
	}
	return b.String()
}

func joinExtSigs(exts, sigs string) string {
	if sigs == "" {
		return exts
	}
	return exts + "_" + sigs
}

// hash12 is the first 12 hex digits of the SHA-256 of s, or twelve zeros
// for an empty list.
func hash12(s string) string {
	if s == "" {
		return "000000000000"
	}
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}
