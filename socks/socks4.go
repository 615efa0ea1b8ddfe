package socks

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/hopper-proxy/hopper/dial"
)

// SOCKS4 commands.
const (
	cmd4Connect byte = 0x01
	cmd4Bind    byte = 0x02
)

// maxField4 bounds the NUL-terminated USERID and 4a host name fields.
const maxField4 = 255

// request4 is a parsed SOCKS4/4a request.
type request4 struct {
	cmd    byte
	target string // host:port; the host is a name for SOCKS4a
	userID string
}

// serveSOCKS4 serves SOCKS4 and SOCKS4a CONNECT. The user id is parsed like a
// proxy username; with auth on, SOCKS4 (which has no password) is rejected.
func (s *Server) serveSOCKS4(st *stream) {
	// The buffer holds the header and both NUL-terminated fields; bytes the
	// client sent past the request are passed on to the target by connect.
	br := bufio.NewReaderSize(st.conn, 8+2*(maxField4+1))
	reply := func(err error, bound net.Addr) error {
		return writeReply4(st.conn, replyCode4(err), bound)
	}
	req, err := readRequest4(br)
	st.req.Target = req.target
	u := dial.ParseUsername(req.userID)
	st.req.User, st.req.Session, st.req.Country = u.Base, u.Session, u.Country
	switch {
	case err != nil && errors.Is(err, errBadRequest):
		st.fail(resultBadRequest, err)
		_ = reply(err, nil)
		return
	case err != nil:
		st.fail(st.handshakeResult(err), err)
		return
	case req.cmd != cmd4Connect:
		err = fmt.Errorf("%w: %#x", errUnsupported, req.cmd)
		result := resultBadRequest
		if req.cmd == cmd4Bind {
			result = resultUnsupported
		}
		st.fail(result, err)
		_ = reply(err, nil)
		return
	case s.cfg.Auth != nil:
		err = fmt.Errorf("%w: %w", dial.ErrAuth, errNoPassword)
		st.fail(resultAuthFailed, err)
		_ = reply(err, nil)
		return
	}
	s.connect(st, br, reply)
}

// readRequest4 reads a SOCKS4/4a request after its version byte:
//
//	CD(1) DSTPORT(2) DSTIP(4) USERID NUL [HOST NUL if DSTIP is 0.0.0.x, x != 0]
//
// Errors from the reader come back as they are; a request that cannot be
// served wraps errBadRequest. Fields parsed before an error are returned.
func readRequest4(br *bufio.Reader) (request4, error) {
	var req request4
	var hdr [7]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return req, err
	}
	req.cmd = hdr[0]
	port := binary.BigEndian.Uint16(hdr[1:3])
	ip := net.IP(hdr[3:7])
	req.target = net.JoinHostPort(ip.String(), strconv.Itoa(int(port)))
	user, err := readField4(br, "user id")
	req.userID = user
	if err != nil {
		return req, err
	}
	if ip[0] == 0 && ip[1] == 0 && ip[2] == 0 && ip[3] != 0 { // SOCKS4a
		host, err := readField4(br, "host name")
		req.target = net.JoinHostPort(host, strconv.Itoa(int(port)))
		if err != nil {
			return req, err
		}
		if !validHost(host) {
			return req, fmt.Errorf("%w: SOCKS4a host %q", errBadRequest, host)
		}
	}
	if port == 0 {
		return req, fmt.Errorf("%w: port 0", errBadRequest)
	}
	return req, nil
}

// readField4 reads a NUL-terminated field of at most maxField4 bytes.
func readField4(br *bufio.Reader, name string) (string, error) {
	b, err := br.ReadSlice(0)
	switch {
	case errors.Is(err, bufio.ErrBufferFull) || len(b) > maxField4+1:
		return "", fmt.Errorf("%w: %s longer than %d bytes", errBadRequest, name, maxField4)
	case err != nil:
		return "", err
	}
	return string(b[:len(b)-1]), nil
}
