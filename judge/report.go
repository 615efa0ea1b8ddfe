package judge

import (
	"net"
	"net/http"
	"strconv"
)

// Report is the JSON object the judge answers every request with. The field
// names are a stable contract (clients decode them):
//
//	{
//	  "ip":      "203.0.113.7",        // peer address of the TCP connection
//	  "port":    51234,                // its port
//	  "method":  "GET",
//	  "proto":   "HTTP/1.1",
//	  "host":    "judge.example:8081", // Host header (or authority)
//	  "uri":     "/",                  // request target as sent (absolute form kept)
//	  "headers": {"Accept": ["*/*"], "Via": ["1.1 squid"]}
//	}
//
// Headers holds every request header but Host, names in canonical form,
// values in the order received. New fields may be added; none will change
// meaning.
//
// What the judge read off the wire comes in fields that are absent when it
// could not (see Fingerprints):
//
//	"header_order": ["host", "user-agent", "accept"],  // as sent, in order
//	"tls":   {"ja4": "t13d1516h2_8daaf6152771_d8a2da3f94cd", ...},
//	"http2": {"akamai": "1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p", ...}
type Report struct {
	IP      string              `json:"ip"`
	Port    int                 `json:"port"`
	Method  string              `json:"method"`
	Proto   string              `json:"proto"`
	Host    string              `json:"host"`
	URI     string              `json:"uri"`
	Headers map[string][]string `json:"headers"`

	// HeaderOrder lists the request's header field names in the order they
	// arrived, spelled as sent (HTTP/2 sends them in lower case), repeats
	// included, pseudo-headers excluded (they are in HTTP2). Host is
	// included over HTTP/1.1.
	HeaderOrder []string `json:"header_order,omitempty"`
	// TLS describes the connection's ClientHello (TLS port only).
	TLS *TLSReport `json:"tls,omitempty"`
	// HTTP2 describes the connection's HTTP/2 preface and this request's
	// HEADERS frame (HTTP/2 only).
	HTTP2 *HTTP2Report `json:"http2,omitempty"`
}

// TLSReport is what the ClientHello of the request's connection said.
type TLSReport struct {
	// JA4 is the FoxIO JA4 fingerprint, JA4R its raw form (the sorted
	// lists instead of their hashes).
	JA4  string `json:"ja4"`
	JA4R string `json:"ja4_r"`
	// ServerName is the SNI ("" when none was sent); ALPN the protocols
	// offered, in order.
	ServerName string   `json:"sni"`
	ALPN       []string `json:"alpn"`
	// Version and Protocol are what the handshake settled on ("TLS 1.3",
	// "h2").
	Version  string `json:"version"`
	Protocol string `json:"protocol"`
}

// HTTP2Report is what the HTTP/2 connection's preface and this request's
// HEADERS frame said.
type HTTP2Report struct {
	// Akamai is the connection's fingerprint "SETTINGS|WINDOW_UPDATE|
	// PRIORITY|pseudo-header order" (see fingerprint.HTTP2.Akamai).
	Akamai string `json:"akamai"`
	// PseudoHeaderOrder is this request's, in full (":method", ...).
	PseudoHeaderOrder []string `json:"pseudo_header_order"`
	// StreamID is this request's stream; HeadersPriority its HEADERS
	// frame's priority as "stream:exclusive:depends-on:weight" ("" when it
	// carried none).
	StreamID        uint32 `json:"stream_id"`
	HeadersPriority string `json:"headers_priority,omitempty"`
}

// NewReport describes r as the judge saw it.
func NewReport(r *http.Request) Report {
	rep := Report{
		Method:  r.Method,
		Proto:   r.Proto,
		Host:    r.Host,
		URI:     r.RequestURI,
		Headers: map[string][]string(r.Header.Clone()),
	}
	if rep.Headers == nil {
		rep.Headers = map[string][]string{}
	}
	host, port, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	rep.IP = host
	rep.Port, _ = strconv.Atoi(port)
	return rep
}
