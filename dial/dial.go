package dial

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// Protocol names the front end a request arrived on.
type Protocol uint8

// Front-end protocols.
const (
	ProtocolUnknown Protocol = iota
	ProtocolHTTPConnect
	ProtocolHTTPForward
	ProtocolSOCKS5
	ProtocolSOCKS4
	ProtocolMITM
)

func (p Protocol) String() string {
	switch p {
	case ProtocolHTTPConnect:
		return "connect"
	case ProtocolHTTPForward:
		return "http"
	case ProtocolSOCKS5:
		return "socks5"
	case ProtocolSOCKS4:
		return "socks4"
	case ProtocolMITM:
		return "mitm"
	default:
		return "unknown"
	}
}

// Request describes one outbound connection a client asked for.
type Request struct {
	// Target is host:port as the client named it. A host name is left
	// unresolved so that an upstream may resolve it (socks5h semantics).
	Target string
	// Protocol is the front end the client used.
	Protocol Protocol
	// Client is the client's address; nil when unknown.
	Client net.Addr
	// User is the account part of the proxy username ("" when anonymous),
	// Session and Country the controls parsed from it or from Hopper-* headers.
	User    string
	Session string
	Country string
	// Forward marks a plain-HTTP forward request. The dialer may then answer
	// with a connection to an HTTP proxy (Outbound.Proxy) instead of a tunnel
	// to Target, and may hand out an idle connection it kept from an earlier
	// request (Outbound.Reused).
	Forward bool
	// ConnID identifies the client connection and Seq counts requests on it
	// (from 0), so a dialer can rotate per connection or every N requests.
	ConnID uint64
	Seq    int
	// Avoid, if set, is the label (Outbound.Upstream) of an upstream that
	// failed this very request after its dial had succeeded, such as one
	// that took a forward request and never answered it, when the request
	// is sent again. A dialer with a choice counts it as already tried: it
	// leaves through another eligible upstream (one the request could have
	// been given anyway) and comes back to this one only when there is no
	// other, and a sticky session bound to it moves as after a failed dial.
	// A dialer with one way out ignores it.
	Avoid string
	// Guard, if set, vets every address the request is about to connect to
	// directly, after name resolution (so a name cannot smuggle a private
	// address past an ACL). It returns an error wrapping ErrDenied to refuse.
	// Dialers that connect directly (Direct, direct upstreams) must call it;
	// connections through an upstream proxy resolve remotely and do not.
	Guard func(netip.Addr) error
}

// Attempt records one try at reaching the target through one upstream.
type Attempt struct {
	Upstream string // redacted upstream label
	Err      error  // nil for the attempt that succeeded
	Elapsed  time.Duration
}

// Outbound is an established outbound connection.
type Outbound struct {
	// Conn carries the bytes. Implementations return the raw *net.TCPConn
	// whenever no protocol layer sits in between, so that relaying can use
	// the kernel's splice path.
	Conn net.Conn
	// Upstream is the redacted label of the egress that carried it, for logs
	// ("direct", "direct@127.0.0.2", "http://proxy.example:8080").
	Upstream string
	// Attempts lists every try, failed ones first, the successful one last.
	Attempts []Attempt
	// Proxy is set (only for Forward requests) when Conn leads to an HTTP
	// proxy that expects absolute-form requests; ProxyAuthorization is then
	// the Proxy-Authorization header value to send, or "".
	Proxy              bool
	ProxyAuthorization string
	// Reused is set when Conn was kept idle from an earlier request; it may
	// have been closed by the peer meanwhile, so a caller should retry once
	// on a fresh connection if it fails before any response byte arrives.
	Reused bool
	// Release, when set, takes Conn back instead of closing it; see Done.
	Release func(o *Outbound, reusable bool)
}

// Done ends the caller's use of o.Conn. reusable reports that the connection
// sits at a message boundary and may carry another request; the dialer may keep
// it idle or close it. Without a Release hook Done closes the connection.
func (o *Outbound) Done(reusable bool) {
	if o.Release != nil {
		o.Release(o, reusable)
		return
	}
	_ = o.Conn.Close()
}

// Dialer opens outbound connections. The context bounds establishment only
// (connect and any upstream handshake), never the life of the connection.
// Errors are classified with Classify.
type Dialer interface {
	Dial(ctx context.Context, req *Request) (*Outbound, error)
}

// DialerFunc adapts a function to Dialer.
type DialerFunc func(ctx context.Context, req *Request) (*Outbound, error)

// Dial calls f.
func (f DialerFunc) Dial(ctx context.Context, req *Request) (*Outbound, error) { return f(ctx, req) }
