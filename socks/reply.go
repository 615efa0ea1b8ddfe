package socks

import (
	"encoding/binary"
	"errors"
	"io"
	"net"

	"github.com/hopper-proxy/hopper/dial"
)

// SOCKS5 reply codes (RFC 1928 section 6).
const (
	rep5Succeeded           byte = 0x00
	rep5GeneralFailure      byte = 0x01
	rep5NotAllowed          byte = 0x02
	rep5HostUnreachable     byte = 0x04
	rep5ConnectionRefused   byte = 0x05
	rep5CommandNotSupported byte = 0x07
)

// SOCKS4 reply codes.
const (
	rep4Granted  byte = 0x5A
	rep4Rejected byte = 0x5B
)

// replyCode5 is the one place a SOCKS5 outcome becomes a reply code, per
// DESIGN.md's error table. go-socks5 itself answers only requests it cannot
// parse into a command (0x07 for an unknown command, 0x08 for an unknown
// address type).
func replyCode5(err error) byte {
	switch {
	case err == nil:
		return rep5Succeeded
	case errors.Is(err, errBadRequest):
		return rep5GeneralFailure
	case errors.Is(err, errUnsupported):
		return rep5CommandNotSupported
	}
	switch dial.Classify(err) {
	case dial.KindNoUpstream:
		return rep5GeneralFailure
	case dial.KindDenied:
		return rep5NotAllowed
	case dial.KindTimeout, dial.KindUnreachable:
		return rep5HostUnreachable
	default: // KindRefused, KindFailed: every attempt failed.
		return rep5ConnectionRefused
	}
}

// replyCode4 is the SOCKS4 counterpart: the protocol knows only granted and
// rejected.
func replyCode4(err error) byte {
	if err == nil {
		return rep4Granted
	}
	return rep4Rejected
}

// writeReply5 writes a SOCKS5 reply. On success BND.ADDR is bound (the
// outbound connection's local address) when it is a TCP address, else
// 0.0.0.0:0; failures always carry 0.0.0.0:0.
func writeReply5(w io.Writer, code byte, bound net.Addr) error {
	var buf [4 + net.IPv6len + 2]byte
	b := append(buf[:0], socks5Version, code, 0x00)
	ip, port := net.IP(nil), 0
	if a, ok := bound.(*net.TCPAddr); ok && code == rep5Succeeded {
		ip, port = a.IP, a.Port
	}
	switch ip4 := ip.To4(); {
	case ip4 != nil:
		b = append(b, 0x01)
		b = append(b, ip4...)
	case len(ip) == net.IPv6len:
		b = append(b, 0x04)
		b = append(b, ip...)
	default:
		b = append(b, 0x01, 0, 0, 0, 0)
		port = 0
	}
	b = binary.BigEndian.AppendUint16(b, uint16(port))
	_, err := w.Write(b)
	return err
}

// writeReply4 writes a SOCKS4 reply: VN 0, the code, and the bound IPv4
// address on success (zeros otherwise; clients ignore them for CONNECT).
func writeReply4(w io.Writer, code byte, bound net.Addr) error {
	var b [8]byte
	b[1] = code
	if a, ok := bound.(*net.TCPAddr); ok && code == rep4Granted {
		if ip4 := a.IP.To4(); ip4 != nil {
			binary.BigEndian.PutUint16(b[2:4], uint16(a.Port))
			copy(b[4:], ip4)
		}
	}
	_, err := w.Write(b[:])
	return err
}
