package rotate

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"

	"github.com/hopper-proxy/hopper/dial"
)

// dialDirect connects to target from local: the system's choice when
// invalid, its address when full-length, else a random address of the prefix.
// Binding an address of a prefix needs the prefix routed to this host (for
// example `ip -6 route add local 2001:db8::/64 dev lo`) or non-local binds
// allowed (net.ipv6.ip_nonlocal_bind=1).
func dialDirect(ctx context.Context, local netip.Prefix, target string) (net.Conn, error) {
	var ip net.IP
	if local.IsValid() {
		ip = net.IP(pickAddr(local, rand.Uint64).AsSlice())
	}
	return dial.DialTCP(ctx, ip, target)
}

// pickAddr returns a uniformly random address of p, avoiding the all-zeros
// host (the network or subnet-router anycast address) and, for IPv4, the
// all-ones broadcast host when the prefix has room for others. random
// supplies the bits.
func pickAddr(p netip.Prefix, random func() uint64) netip.Addr {
	bits, total := p.Bits(), p.Addr().BitLen()
	hostBits := total - bits
	if hostBits == 0 {
		return p.Addr()
	}
	base := p.Masked().Addr().As16()
	offset := 0 // byte offset of the address inside the 16-byte form
	if p.Addr().Is4() {
		offset = 12
	}
	for try := 0; ; try++ {
		var r [16]byte
		putUint64(r[:8], random())
		putUint64(r[8:], random())
		out := base
		allZero, allOnes := true, true
		for i := offset; i < 16; i++ {
			firstBit := (i - offset) * 8 // index of this byte's top bit in the address
			var mask byte
			switch {
			case firstBit >= bits:
				mask = 0xff
			case firstBit+8 > bits:
				mask = 0xff >> (bits - firstBit)
			}
			out[i] = base[i]&^mask | r[i]&mask
			if out[i]&mask != 0 {
				allZero = false
			}
			if out[i]&mask != mask {
				allOnes = false
			}
		}
		avoid := allZero || (p.Addr().Is4() && allOnes)
		if !avoid || hostBits < 2 || try == 64 {
			if p.Addr().Is4() {
				return netip.AddrFrom4([4]byte(out[12:]))
			}
			return netip.AddrFrom16(out)
		}
	}
}

func putUint64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (56 - 8*i))
	}
}
