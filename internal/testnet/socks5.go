package testnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// The server side of a SOCKS5 handshake, for test proxies: each reader
// takes one client message off r; what to answer is the proxy's business
// (SOCKS5Reply builds the final reply).

// SOCKS5 address types (RFC 1928 section 5).
const (
	SOCKS5IPv4   byte = 1
	SOCKS5Domain byte = 3
	SOCKS5IPv6   byte = 4
)

// ReadSOCKS5Methods reads a client's greeting (version 5) and returns the
// authentication methods it offers.
func ReadSOCKS5Methods(r io.Reader) ([]byte, error) {
	var head [2]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, fmt.Errorf("socks5 greeting: %w", err)
	}
	if head[0] != 5 {
		return nil, fmt.Errorf("socks5 greeting: version %d", head[0])
	}
	methods := make([]byte, head[1])
	if _, err := io.ReadFull(r, methods); err != nil {
		return nil, fmt.Errorf("socks5 greeting: %w", err)
	}
	return methods, nil
}

// ReadSOCKS5UserPass reads a username/password request (RFC 1929).
func ReadSOCKS5UserPass(r io.Reader) (user, pass string, err error) {
	var ver [1]byte
	if _, err := io.ReadFull(r, ver[:]); err != nil {
		return "", "", fmt.Errorf("socks5 username/password: %w", err)
	}
	if ver[0] != 1 {
		return "", "", fmt.Errorf("socks5 username/password: version %d", ver[0])
	}
	if user, err = readSOCKS5String(r); err != nil {
		return "", "", fmt.Errorf("socks5 username: %w", err)
	}
	if pass, err = readSOCKS5String(r); err != nil {
		return "", "", fmt.Errorf("socks5 password: %w", err)
	}
	return user, pass, nil
}

// readSOCKS5String reads a length-prefixed string.
func readSOCKS5String(r io.Reader) (string, error) {
	var n [1]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return "", err
	}
	b := make([]byte, n[0])
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return string(b), nil
}

// errNotConnect is a request other than CONNECT.
var errNotConnect = errors.New("socks5 request: not CONNECT")

// ReadSOCKS5Connect reads a CONNECT request and returns its address type
// (SOCKS5IPv4, SOCKS5Domain or SOCKS5IPv6), host (an address or a name as
// sent) and port.
func ReadSOCKS5Connect(r io.Reader) (atyp byte, host string, port int, err error) {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return 0, "", 0, fmt.Errorf("socks5 request: %w", err)
	}
	if head[0] != 5 {
		return 0, "", 0, fmt.Errorf("socks5 request: version %d", head[0])
	}
	if head[1] != 1 {
		return 0, "", 0, errNotConnect
	}
	switch atyp = head[3]; atyp {
	case SOCKS5IPv4, SOCKS5IPv6:
		ip := make(net.IP, net.IPv4len)
		if atyp == SOCKS5IPv6 {
			ip = make(net.IP, net.IPv6len)
		}
		if _, err := io.ReadFull(r, ip); err != nil {
			return 0, "", 0, fmt.Errorf("socks5 request address: %w", err)
		}
		host = ip.String()
	case SOCKS5Domain:
		if host, err = readSOCKS5String(r); err != nil {
			return 0, "", 0, fmt.Errorf("socks5 request name: %w", err)
		}
	default:
		return 0, "", 0, fmt.Errorf("socks5 request: address type %d", atyp)
	}
	var p [2]byte
	if _, err := io.ReadFull(r, p[:]); err != nil {
		return 0, "", 0, fmt.Errorf("socks5 request port: %w", err)
	}
	return atyp, host, int(binary.BigEndian.Uint16(p[:])), nil
}

// SOCKS5Reply is a reply with code rep (0 succeeded) and an IPv4 bound
// address; nil bound is 0.0.0.0:0.
func SOCKS5Reply(rep byte, bound *net.TCPAddr) []byte {
	b := []byte{5, rep, 0, SOCKS5IPv4, 0, 0, 0, 0, 0, 0}
	if bound != nil {
		if ip4 := bound.IP.To4(); ip4 != nil {
			copy(b[4:8], ip4)
		}
		binary.BigEndian.PutUint16(b[8:], uint16(bound.Port))
	}
	return b
}
