package fingerprint

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// TLS constants used by the parsers (RFC 8446).
const (
	recordTypeHandshake  = 0x16
	handshakeClientHello = 0x01
	recordHeaderLen      = 5
	maxRecordPayload     = 16384 + 2048 // TLSCiphertext limit; a ClientHello is plaintext, but be lenient

	// MaxClientHello bounds the handshake message ExtractClientHello
	// accepts; real ones are under 2 KiB (8 KiB with large post-quantum
	// key shares), and any fits one record's 16-bit length.
	MaxClientHello = 32 << 10
)

// Extension types the fingerprints single out.
const (
	ExtServerName          uint16 = 0x0000
	ExtSupportedGroups     uint16 = 0x000a
	ExtECPointFormats      uint16 = 0x000b
	ExtSignatureAlgorithms uint16 = 0x000d
	ExtALPN                uint16 = 0x0010
	ExtPadding             uint16 = 0x0015
	ExtPreSharedKey        uint16 = 0x0029
	ExtEarlyData           uint16 = 0x002a
	ExtSupportedVersions   uint16 = 0x002b
)

// Errors of the ClientHello readers. ErrIncomplete means more bytes are
// needed; the others mean the bytes are not a ClientHello at all.
var (
	ErrIncomplete     = errors.New("incomplete ClientHello")
	ErrNotHandshake   = errors.New("not a TLS handshake record")
	ErrNotClientHello = errors.New("not a ClientHello")
	ErrMalformed      = errors.New("malformed ClientHello")
	ErrTooLarge       = errors.New("ClientHello too large")
)

// ClientHello is what a ClientHello message says, in the order sent.
// GREASE values (RFC 8701) are kept; the fingerprints drop them.
type ClientHello struct {
	// Raw is the handshake message: type, 24-bit length and body.
	Raw []byte
	// RecordVersion is the legacy version of the record that carried it.
	RecordVersion uint16
	// Version is the message's legacy_version (0x0303 for TLS 1.2 and 1.3).
	Version             uint16
	SessionID           []byte
	CipherSuites        []uint16
	CompressionMethods  []byte
	Extensions          []uint16 // extension types, in order
	ServerName          string   // first host_name of server_name
	ALPN                []string // protocols of application_layer_protocol_negotiation
	SupportedVersions   []uint16
	SupportedGroups     []uint16
	SignatureAlgorithms []uint16
	ECPointFormats      []byte
}

// ExtractClientHello reads TLS records from the start of b until they hold
// one complete ClientHello message, and returns the message, the legacy
// version of the first record and how many bytes of b the records took. It
// returns ErrIncomplete (with no message) while b ends too early, so a
// caller reading a connection reads more and tries again.
func ExtractClientHello(b []byte) (msg []byte, recordVersion uint16, n int, err error) {
	var (
		hs   []byte
		need = -1 // handshake message length with header, once known
	)
	for {
		if len(b)-n < recordHeaderLen {
			return nil, 0, 0, ErrIncomplete
		}
		h := b[n : n+recordHeaderLen]
		if h[0] != recordTypeHandshake {
			return nil, 0, 0, ErrNotHandshake
		}
		if n == 0 {
			recordVersion = binary.BigEndian.Uint16(h[1:3])
			if h[1] != 3 { // SSL 3.0 to TLS 1.3 all use major version 3
				return nil, 0, 0, ErrNotHandshake
			}
		}
		l := int(binary.BigEndian.Uint16(h[3:5]))
		if l == 0 || l > maxRecordPayload {
			return nil, 0, 0, fmt.Errorf("%w: record length %d", ErrMalformed, l)
		}
		if len(b)-n-recordHeaderLen < l {
			return nil, 0, 0, ErrIncomplete
		}
		hs = append(hs, b[n+recordHeaderLen:n+recordHeaderLen+l]...)
		n += recordHeaderLen + l
		if need < 0 && len(hs) >= 4 {
			if hs[0] != handshakeClientHello {
				return nil, 0, 0, ErrNotClientHello
			}
			need = 4 + (int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3]))
			if need > MaxClientHello {
				return nil, 0, 0, ErrTooLarge
			}
		}
		if need >= 0 && len(hs) >= need {
			if len(hs) > need {
				// Another handshake message shares the record: not what
				// a client's first flight looks like.
				return nil, 0, 0, fmt.Errorf("%w: trailing handshake data", ErrMalformed)
			}
			return hs, recordVersion, n, nil
		}
	}
}

// reader is a bounds-checked cursor over a message.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) bytes(n int) []byte {
	if r.bad || n < 0 || len(r.b) < n {
		r.bad = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() int {
	v := r.bytes(1)
	if v == nil {
		return 0
	}
	return int(v[0])
}

func (r *reader) u16() int {
	v := r.bytes(2)
	if v == nil {
		return 0
	}
	return int(binary.BigEndian.Uint16(v))
}

func (r *reader) u24() int {
	v := r.bytes(3)
	if v == nil {
		return 0
	}
	return int(v[0])<<16 | int(v[1])<<8 | int(v[2])
}

// vec8 and vec16 read a vector with a one- or two-byte length prefix.
func (r *reader) vec8() []byte  { return r.bytes(r.u8()) }
func (r *reader) vec16() []byte { return r.bytes(r.u16()) }

func u16s(b []byte) ([]uint16, bool) {
	if len(b)%2 != 0 {
		return nil, false
	}
	out := make([]uint16, 0, len(b)/2)
	for i := 0; i < len(b); i += 2 {
		out = append(out, binary.BigEndian.Uint16(b[i:]))
	}
	return out, true
}

// ParseClientHello parses a ClientHello handshake message (RFC 8446
// §4.1.2: type, 24-bit length, body), as ExtractClientHello returns it.
// Extensions it does not interpret are recorded by type only. The result's
// Raw is msg itself.
func ParseClientHello(msg []byte) (*ClientHello, error) {
	r := &reader{b: msg}
	if r.u8() != handshakeClientHello {
		return nil, ErrNotClientHello
	}
	body := r.bytes(r.u24())
	if r.bad {
		return nil, fmt.Errorf("%w: message shorter than its length", ErrMalformed)
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: bytes after the message", ErrMalformed)
	}
	h := &ClientHello{Raw: msg}
	r = &reader{b: body}
	h.Version = uint16(r.u16())
	r.bytes(32) // random
	h.SessionID = r.vec8()
	suites := r.vec16()
	h.CompressionMethods = r.vec8()
	if r.bad {
		return nil, fmt.Errorf("%w: truncated before the extensions", ErrMalformed)
	}
	var ok bool
	if h.CipherSuites, ok = u16s(suites); !ok {
		return nil, fmt.Errorf("%w: odd cipher suite list", ErrMalformed)
	}
	if len(r.b) == 0 {
		return h, nil // no extensions (TLS 1.2 and older may omit them)
	}
	exts := r.vec16()
	if r.bad || len(r.b) != 0 {
		return nil, fmt.Errorf("%w: extension block length", ErrMalformed)
	}
	er := &reader{b: exts}
	for len(er.b) > 0 {
		typ := uint16(er.u16())
		data := er.vec16()
		if er.bad {
			return nil, fmt.Errorf("%w: extension %#04x truncated", ErrMalformed, typ)
		}
		h.Extensions = append(h.Extensions, typ)
		if err := h.parseExtension(typ, data); err != nil {
			return nil, fmt.Errorf("%w: extension %#04x: %w", ErrMalformed, typ, err)
		}
	}
	return h, nil
}

var errExtension = errors.New("bad contents")

// parseExtension reads the extensions the fingerprints and the judge use.
func (h *ClientHello) parseExtension(typ uint16, data []byte) error {
	r := &reader{b: data}
	var ok bool
	switch typ {
	case ExtServerName:
		if len(data) == 0 {
			return nil // the empty form a server sends back
		}
		list := &reader{b: r.vec16()}
		for len(list.b) > 0 && !list.bad {
			kind := list.u8()
			name := list.vec16()
			if kind == 0 && h.ServerName == "" && !list.bad {
				h.ServerName = string(name)
			}
		}
		if list.bad {
			return errExtension
		}
	case ExtALPN:
		list := &reader{b: r.vec16()}
		for len(list.b) > 0 && !list.bad {
			if p := list.vec8(); !list.bad {
				h.ALPN = append(h.ALPN, string(p))
			}
		}
		if list.bad {
			return errExtension
		}
	case ExtSupportedVersions:
		if h.SupportedVersions, ok = u16s(r.vec8()); !ok {
			return errExtension
		}
	case ExtSupportedGroups:
		if h.SupportedGroups, ok = u16s(r.vec16()); !ok {
			return errExtension
		}
	case ExtSignatureAlgorithms:
		if h.SignatureAlgorithms, ok = u16s(r.vec16()); !ok {
			return errExtension
		}
	case ExtECPointFormats:
		h.ECPointFormats = r.vec8()
	default:
		return nil
	}
	if r.bad {
		return errExtension
	}
	return nil
}

// IsGREASE reports whether v is one of the GREASE values of RFC 8701
// (0x0a0a, 0x1a1a, ... 0xfafa).
func IsGREASE(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }
