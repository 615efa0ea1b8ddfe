package rotate

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"strconv"

	"github.com/hopper-proxy/hopper/relay"
)

// serveSOCKS is a minimal SOCKS5 CONNECT server (RFC 1928/1929) recording
// the user name and address type it received.
func (p *testProxy) serveSOCKS(c net.Conn) {
	br := bufio.NewReader(c)
	var head [2]byte
	if _, err := io.ReadFull(br, head[:]); err != nil || head[0] != 5 {
		return
	}
	methods := make([]byte, head[1])
	if _, err := io.ReadFull(br, methods); err != nil {
		return
	}
	user := ""
	if p.opts.auth != nil {
		if !contains(methods, 2) {
			_, _ = c.Write([]byte{5, 0xff})
			return
		}
		_, _ = c.Write([]byte{5, 2})
		u, pass, ok := readSOCKSAuth(br)
		if !ok {
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
	var req [4]byte
	if _, err := io.ReadFull(br, req[:]); err != nil || req[1] != 1 {
		return
	}
	var host string
	switch req[3] {
	case 1, 4:
		ip := make([]byte, 4)
		if req[3] == 4 {
			ip = make([]byte, 16)
		}
		if _, err := io.ReadFull(br, ip); err != nil {
			return
		}
		host = net.IP(ip).String()
	case 3:
		n, err := br.ReadByte()
		if err != nil {
			return
		}
		name := make([]byte, n)
		if _, err := io.ReadFull(br, name); err != nil {
			return
		}
		host = string(name)
	default:
		return
	}
	var port [2]byte
	if _, err := io.ReadFull(br, port[:]); err != nil {
		return
	}
	p.record(user, req[3], host)
	if p.opts.socksReply != 0 {
		_, _ = c.Write([]byte{5, p.opts.socksReply, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	up, err := p.dialTarget(net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(port[:])))))
	if err != nil {
		_, _ = c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	defer p.untrack(up)
	p.connects.Add(1)
	bound := up.LocalAddr().(*net.TCPAddr)
	rep := []byte{5, 0, 0, 1}
	rep = append(rep, bound.IP.To4()...)
	rep = binary.BigEndian.AppendUint16(rep, uint16(bound.Port))
	rep = append(rep, p.opts.greeting...)
	if _, err := c.Write(rep); err != nil {
		return
	}
	_, _ = relay.Pipe(c, up, 0)
}

func readSOCKSAuth(br *bufio.Reader) (user, pass string, ok bool) {
	ver, err := br.ReadByte()
	if err != nil || ver != 1 {
		return "", "", false
	}
	read := func() (string, bool) {
		n, err := br.ReadByte()
		if err != nil {
			return "", false
		}
		b := make([]byte, n)
		_, err = io.ReadFull(br, b)
		return string(b), err == nil
	}
	if user, ok = read(); !ok {
		return "", "", false
	}
	pass, ok = read()
	return user, pass, ok
}

func contains(b []byte, v byte) bool {
	for _, x := range b {
		if x == v {
			return true
		}
	}
	return false
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
	defer p.untrack(up)
	p.connects.Add(1)
	rep := append([]byte{0, 90, 0, 0, 0, 0, 0, 0}, p.opts.greeting...)
	if _, err := c.Write(rep); err != nil {
		return
	}
	_, _ = relay.Pipe(c, up, 0)
}
