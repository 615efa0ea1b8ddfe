package fingerprint

import (
	"strconv"
	"strings"
)

// Setting is one HTTP/2 SETTINGS parameter (RFC 9113 §6.5.1), any
// identifier, known or not.
type Setting struct {
	ID    uint16
	Value uint32
}

// Priority is a stream dependency (RFC 7540 §5.3): a PRIORITY frame's, or
// the one a HEADERS frame carries with its PRIORITY flag. Weight is the
// wire value, 0 to 255, for a weight of Weight+1.
type Priority struct {
	StreamID  uint32
	Exclusive bool
	DependsOn uint32
	Weight    uint8
}

// String is the Akamai form "stream:exclusive:depends-on:weight", the
// weight counted from 1 as the Akamai fingerprint does.
func (p Priority) String() string {
	excl := "0"
	if p.Exclusive {
		excl = "1"
	}
	return strconv.FormatUint(uint64(p.StreamID), 10) + ":" + excl + ":" +
		strconv.FormatUint(uint64(p.DependsOn), 10) + ":" + strconv.Itoa(int(p.Weight)+1)
}

// HTTP2 is a client's HTTP/2 connection preface and how it opens its first
// request: what the Akamai fingerprint is made of, plus the HEADERS
// priority and the first stream's identifier, which a client that wants to
// look the same must also copy.
type HTTP2 struct {
	// Settings are the first SETTINGS frame's parameters, in order.
	Settings []Setting
	// WindowUpdate is the increment of the connection-level WINDOW_UPDATE
	// sent before the first request; 0 when none was.
	WindowUpdate uint32
	// Priorities are the PRIORITY frames sent before the first request.
	Priorities []Priority
	// HeadersPriority is the priority the first HEADERS frame carries
	// (its StreamID is that frame's); nil when it carries none.
	HeadersPriority *Priority
	// PseudoHeaderOrder is the first request's pseudo-headers in order,
	// such as [":method", ":authority", ":scheme", ":path"].
	PseudoHeaderOrder []string
	// FirstStreamID is the first request's stream (1, or 15 for a
	// Firefox that sent PRIORITY frames for streams 3 to 13); 0 when
	// unknown.
	FirstStreamID uint32
}

// Akamai is the fingerprint of Akamai's "Passive Fingerprinting of HTTP/2
// Clients" (Black Hat EU 2017), as fingerprinting services print it:
//
//	1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p
//
// SETTINGS as id:value joined by ";", the WINDOW_UPDATE increment ("00"
// when none), PRIORITY frames joined by "," ("0" when none), and the first
// letters of the pseudo-headers joined by ",".
func (h HTTP2) Akamai() string {
	var b strings.Builder
	for i, s := range h.Settings {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(strconv.FormatUint(uint64(s.ID), 10))
		b.WriteByte(':')
		b.WriteString(strconv.FormatUint(uint64(s.Value), 10))
	}
	b.WriteByte('|')
	if h.WindowUpdate == 0 {
		b.WriteString("00")
	} else {
		b.WriteString(strconv.FormatUint(uint64(h.WindowUpdate), 10))
	}
	b.WriteByte('|')
	if len(h.Priorities) == 0 {
		b.WriteByte('0')
	}
	for i, p := range h.Priorities {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p.String())
	}
	b.WriteByte('|')
	for i, p := range h.PseudoHeaderOrder {
		if i > 0 {
			b.WriteByte(',')
		}
		if len(p) > 1 {
			b.WriteByte(p[1])
		}
	}
	return b.String()
}

// Clone returns a deep copy of h.
func (h HTTP2) Clone() HTTP2 {
	out := h
	out.Settings = append([]Setting(nil), h.Settings...)
	out.Priorities = append([]Priority(nil), h.Priorities...)
	out.PseudoHeaderOrder = append([]string(nil), h.PseudoHeaderOrder...)
	if h.HeadersPriority != nil {
		p := *h.HeadersPriority
		out.HeadersPriority = &p
	}
	return out
}
