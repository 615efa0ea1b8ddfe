package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Raw clients for the end-to-end tests: they show exactly what hopper puts
// on the wire, which curl hides behind exit codes.

// httpOriginOn is an HTTP origin on ip:0 answering "origin <its addr>".
func httpOriginOn(t *testing.T, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "origin "+addr)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return addr
}

// rawResponse is what hopper answered to a raw HTTP request.
type rawResponse struct {
	status int
	header http.Header
	body   string
}

// basicAuth renders a Proxy-Authorization header line, or "" for user "".
func basicAuth(user, pass string) string {
	if user == "" {
		return ""
	}
	return "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass)) + "\r\n"
}

// rawHTTP sends one request (method CONNECT or GET in absolute form) for
// target through the proxy at addr and reads the response. For a CONNECT
// answered 200 it reads no body.
func rawHTTP(t *testing.T, addr, method, target, user, pass string) rawResponse {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	uri := target
	if method != "CONNECT" {
		uri = "http://" + target + "/"
	}
	_, err = fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n", method, uri, target, basicAuth(user, pass))
	require.NoError(t, err)
	req := &http.Request{Method: method}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	require.NoError(t, err)
	defer resp.Body.Close()
	r := rawResponse{status: resp.StatusCode, header: resp.Header}
	if method != "CONNECT" || resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		r.body = string(b)
	}
	return r
}

// socksResult is how far a SOCKS5 exchange got.
type socksResult struct {
	method     byte // the method the server chose (0xFF: none acceptable)
	authStatus byte // RFC 1929 status, when user/pass was negotiated
	reply      byte // the CONNECT reply code, when the request was sent
	body       string
}

// rawSOCKS5 runs a SOCKS5 exchange with addr: it offers user/pass when user
// is set (no-auth otherwise), authenticates, asks to CONNECT to target
// (host:port; the host is sent as a name unless it is an IP), and on
// success sends an HTTP GET through the tunnel and reads the answer.
func rawSOCKS5(t *testing.T, addr, user, pass, target string) socksResult {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	var res socksResult
	method := byte(0x00)
	if user != "" {
		method = 0x02
	}
	_, err = c.Write([]byte{0x05, 0x01, method})
	require.NoError(t, err)
	sel := make([]byte, 2)
	if _, err := io.ReadFull(c, sel); err != nil {
		res.method = 0xFF // closed without choosing
		return res
	}
	res.method = sel[1]
	if sel[1] != method {
		return res
	}
	if method == 0x02 {
		msg := append([]byte{0x01, byte(len(user))}, user...)
		msg = append(append(msg, byte(len(pass))), pass...)
		_, err = c.Write(msg)
		require.NoError(t, err)
		st := make([]byte, 2)
		_, err = io.ReadFull(c, st)
		require.NoError(t, err)
		res.authStatus = st[1]
		if st[1] != 0x00 {
			return res
		}
	}
	host, portS, err := net.SplitHostPort(target)
	require.NoError(t, err)
	port, err := strconv.Atoi(portS)
	require.NoError(t, err)
	req := []byte{0x05, 0x01, 0x00}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is4() {
		b := ip.As4()
		req = append(append(req, 0x01), b[:]...)
	} else {
		req = append(append(req, 0x03, byte(len(host))), host...)
	}
	req = binary.BigEndian.AppendUint16(req, uint16(port))
	_, err = c.Write(req)
	require.NoError(t, err)
	rep := make([]byte, 4)
	_, err = io.ReadFull(c, rep)
	require.NoError(t, err)
	res.reply = rep[1]
	if rep[1] != 0x00 {
		return res
	}
	skip := map[byte]int{0x01: 4, 0x04: 16}[rep[3]]
	if rep[3] == 0x03 {
		n := make([]byte, 1)
		_, err = io.ReadFull(c, n)
		require.NoError(t, err)
		skip = int(n[0])
	}
	_, err = io.ReadFull(c, make([]byte, skip+2))
	require.NoError(t, err)
	_, err = fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	res.body = string(b)
	return res
}

// htpasswdFile writes a users file with bcrypt entries made by htpasswd -B.
func htpasswdFile(t *testing.T, path string, users ...[2]string) {
	t.Helper()
	var b strings.Builder
	for _, u := range users {
		out, err := exec.Command("htpasswd", "-nbB", "-C", "4", u[0], u[1]).Output()
		require.NoError(t, err, "htpasswd (apache2-utils; .ci/deps installs it)")
		b.WriteString(strings.TrimSpace(string(out)) + "\n")
	}
	require.NoError(t, writeFileAtomic(path, b.String()))
}

// writeFileAtomic replaces path with body in one rename, so a reload never
// sees half a file.
func writeFileAtomic(path, body string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
