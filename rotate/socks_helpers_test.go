package rotate

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"slices"
	"strconv"

	"github.com/hopper-proxy/hopper/internal/testnet"
	"github.com/hopper-proxy/hopper/relay"
)

// serveSOCKS is a minimal SOCKS5 CONNECT server (RFC 1928/1929) recording
// the user name and address type it received.
func (p *testProxy) serveSOCKS(c net.Conn) {
	br := bufio.NewReader(c)
	methods, err := testnet.ReadSOCKS5Methods(br)
	if err != nil {
		return
	}
	user := ""
	if p.opts.auth != nil {
		if !slices.Contains(methods, 2) {
			_, _ = c.Write([]byte{5, 0xff})
			return
		}
		_, _ = c.Write([]byte{5, 2})
		u, pass, err := testnet.ReadSOCKS5UserPass(br)
		if err != nil {
			return
		}
		user = u
		if !p.opts.auth(u, pass) {
			p.record(u, 0, "")
			_, _ = c.Write([]byte{1, 1})
			return
		}
		_, _ = c.Write([]byte{1, 0})
	} else {
		_, _ = c.Write([]byte{5, 0})
	}
	atyp, host, port, err := testnet.ReadSOCKS5Connect(br)
	if err != nil {
		return
	}
	p.record(user, atyp, host)
	if p.opts.socksReply != 0 {
		_, _ = c.Write(testnet.SOCKS5Reply(p.opts.socksReply, nil))
		return
	}
	up, err := p.dialTarget(net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		_, _ = c.Write(testnet.SOCKS5Reply(5, nil))
		return
	}
	defer p.srv.Untrack(up)
	p.connects.Add(1)
	rep := append(testnet.SOCKS5Reply(0, up.LocalAddr().(*net.TCPAddr)), p.opts.greeting...)
	if _, err := c.Write(rep); err != nil {
		return
	}
	_, _ = relay.Pipe(c, up, 0)
}

// serveSOCKS4 is a minimal SOCKS4/4a CONNECT server recording the user ID
// and the address type it received (1: IPv4, 3: a 4a name).
func (p *testProxy) serveSOCKS4(c net.Conn) {
	br := bufio.NewReader(c)
	var head [8]byte
	if _, err := io.ReadFull(br, head[:]); err != nil || head[0] != 4 || head[1] != 1 {
		return
	}
	userID, err := br.ReadString(0)
	if err != nil {
		return
	}
	userID = userID[:len(userID)-1]
	port := binary.BigEndian.Uint16(head[2:4])
	host, atyp := net.IP(head[4:8]).String(), byte(1)
	if head[4] == 0 && head[5] == 0 && head[6] == 0 && head[7] != 0 {
		name, err := br.ReadString(0)
		if err != nil {
			return
		}
		host, atyp = name[:len(name)-1], 3
	}
	p.record(userID, atyp, host)
	if p.opts.socksReply != 0 {
		_, _ = c.Write([]byte{0, p.opts.socksReply, 0, 0, 0, 0, 0, 0})
		return
	}
	up, err := p.dialTarget(net.JoinHostPort(host, strconv.Itoa(int(port))))
	if err != nil {
		_, _ = c.Write([]byte{0, 91, 0, 0, 0, 0, 0, 0})
		return
	}
	defer p.srv.Untrack(up)
	p.connects.Add(1)
	rep := append([]byte{0, 90, 0, 0, 0, 0, 0, 0}, p.opts.greeting...)
	if _, err := c.Write(rep); err != nil {
		return
	}
	_, _ = relay.Pipe(c, up, 0)
}
