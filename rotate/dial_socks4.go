package rotate

import (
	"context"
	"errors"
	"io"
	"net"

	"github.com/hopper-proxy/hopper/dial"
)

// SOCKS4 and SOCKS4a (the 1990s protocol free proxy lists are full of):
// CONNECT with a user ID and no password; IPv4 targets, or with 4a a name
// the upstream resolves.
const (
	socks4Version   = 0x04
	socks4Granted   = 90
	socks4Rejected  = 91
	socks4NoIdentd  = 92
	socks4BadUserID = 93
	// maxUserID4 bounds the user ID (NUL-terminated on the wire).
	maxUserID4 = 255
)

// connectSOCKS4 runs a SOCKS4 (t.ip, IPv4) or SOCKS4a (t.name) CONNECT
// handshake on c. It reads exactly the 8-byte reply, so nothing the target
// sends is read ahead. It does not close c.
func connectSOCKS4(ctx context.Context, c net.Conn, t socksTarget, userID string) error {
	req := make([]byte, 0, 9+len(userID)+len(t.name)+1)
	req = append(req, socks4Version, socksCmdConnect, byte(t.port>>8), byte(t.port))
	if t.name != "" {
		req = append(req, 0, 0, 0, 1) // 0.0.0.x: the name follows the user ID (4a)
	} else {
		ip := t.ip.As4()
		req = append(req, ip[:]...)
	}
	req = append(req, userID...)
	req = append(req, 0)
	if t.name != "" {
		req = append(req, t.name...)
		req = append(req, 0)
	}
	err := withDeadline(ctx, c, func() error {
		if _, err := c.Write(req); err != nil {
			return err
		}
		var reply [8]byte
		if _, err := io.ReadFull(c, reply[:]); err != nil {
			return err
		}
		if reply[0] != 0 {
			return &ProxyError{Op: "handshake", Reason: "not a SOCKS4 server", Err: dial.ErrUpstream}
		}
		return socks4ReplyErr(reply[1])
	})
	if err != nil {
		var pe *ProxyError
		if errors.As(err, &pe) {
			return err
		}
		return proxyFailure("handshake", err)
	}
	return nil
}

// socks4ReplyErr maps a SOCKS4 reply code to an error (nil when granted).
// "Rejected or failed" is all SOCKS4 says when the target cannot be
// reached, so it counts against the target, not the upstream: an upstream
// that rejects everything fails its probes instead.
func socks4ReplyErr(code byte) error {
	switch code {
	case socks4Granted:
		return nil
	case socks4Rejected:
		return &ProxyError{Op: "reply", Code: int(code), Reason: "request rejected or failed", Err: dial.ErrTargetUnreachable}
	case socks4NoIdentd, socks4BadUserID:
		return &ProxyError{Op: "auth", Code: int(code), Reason: "user ID refused (identd)", Err: ErrProxyAuth}
	default:
		return &ProxyError{Op: "reply", Code: int(code), Reason: "bad SOCKS4 reply code", Err: dial.ErrUpstream}
	}
}
