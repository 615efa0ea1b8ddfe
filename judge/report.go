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
type Report struct {
	IP      string              `json:"ip"`
	Port    int                 `json:"port"`
	Method  string              `json:"method"`
	Proto   string              `json:"proto"`
	Host    string              `json:"host"`
	URI     string              `json:"uri"`
	Headers map[string][]string `json:"headers"`
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
