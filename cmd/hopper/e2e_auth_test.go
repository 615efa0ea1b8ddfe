package main

import (
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Passwords distinctive enough to grep the process log for.
const (
	alicePass = "wonderland-S3cret"
	bobPass   = "builder-S3cret"
	wrongPass = "not-the-Passw0rd"
)

// TestAuthEndToEnd runs the binary with one --auth account and one htpasswd
// (bcrypt) account and drives both protocols with no credentials, wrong ones
// and right ones; then checks that no password reached the log.
func TestAuthEndToEnd(t *testing.T) {
	origin := sourceOrigin(t)
	users := filepath.Join(t.TempDir(), "users")
	htpasswdFile(t, users, [2]string{"bob", bobPass})
	h := startHopper(t, "--auth", "alice:"+alicePass, "--users", users, "--log-level", "debug")

	// HTTP forward and CONNECT: 407 with the Basic challenge.
	for _, method := range []string{"GET", "CONNECT"} {
		for _, cred := range [][2]string{{"", ""}, {"alice", wrongPass}, {"bob", alicePass}} {
			r := rawHTTP(t, h.Addr, method, origin, cred[0], cred[1])
			assert.Equal(t, 407, r.status, "%s %v", method, cred)
			assert.Equal(t, `Basic realm="hopper"`, r.header.Get("Proxy-Authenticate"), "%s %v", method, cred)
			if cred[1] != "" {
				assert.NotContains(t, r.body, cred[1])
			}
			assert.Regexp(t, `^hopper: [^\n]+\n$`, r.body)
		}
	}
	// Right credentials, static and bcrypt, session suffix parsed after
	// the account is recognised.
	assert.Equal(t, "127.0.0.1", curl(t, "-x", "http://alice:"+alicePass+"@"+h.Addr, "http://"+origin+"/"))
	assert.Equal(t, "127.0.0.1", curl(t, "-p", "-x", "http://bob-session-42:"+bobPass+"@"+h.Addr, "http://"+origin+"/"))
	assert.Equal(t, 200, rawHTTP(t, h.Addr, "CONNECT", origin, "alice-country-de", alicePass).status)

	// SOCKS5: no credentials offered → no acceptable method; wrong → RFC
	// 1929 status 0x01; right → tunnel.
	assert.Equal(t, byte(0xFF), rawSOCKS5(t, h.Addr, "", "", origin).method)
	for _, cred := range [][2]string{{"alice", wrongPass}, {"bob", alicePass}, {"nobody", bobPass}} {
		r := rawSOCKS5(t, h.Addr, cred[0], cred[1], origin)
		assert.Equal(t, byte(0x02), r.method)
		assert.Equal(t, byte(0x01), r.authStatus, "%v", cred)
	}
	r := rawSOCKS5(t, h.Addr, "bob-session-7", bobPass, origin)
	assert.Equal(t, byte(0x00), r.authStatus)
	assert.Equal(t, byte(0x00), r.reply)
	assert.Equal(t, "127.0.0.1", r.body)
	assert.Equal(t, "127.0.0.1", curl(t, "-x", "socks5h://alice:"+alicePass+"@"+h.Addr, "http://"+origin+"/"))
	// curl gives up on a SOCKS5 login failure.
	err := exec.Command("curl", "-sS", "--max-time", "10", "-x", "socks5h://alice:"+wrongPass+"@"+h.Addr, "http://"+origin+"/").Run()
	assert.Error(t, err)

	// The access log names accounts (never passwords) and auth failures.
	require.Eventually(t, func() bool { return len(h.records("tunnel")) >= 11 }, 10*time.Second, 20*time.Millisecond, h.log())
	results := map[string]int{}
	usersSeen := map[string]bool{}
	for _, rec := range h.records("tunnel") {
		results[fmt.Sprint(rec["result"])]++
		usersSeen[fmt.Sprint(rec["user"])] = true
	}
	assert.GreaterOrEqual(t, results["auth-failed"], 6, "%v", results)
	assert.GreaterOrEqual(t, results["ok"], 5, "%v", results)
	assert.True(t, usersSeen["alice"] && usersSeen["bob"], "%v", usersSeen)

	h.stop(t)
	logText := h.log()
	for _, secret := range []string{alicePass, bobPass, wrongPass} {
		assert.NotContains(t, logText, secret, "a password reached the log")
	}
	for _, pair := range []string{"alice:" + alicePass, "bob:" + bobPass, "alice:" + wrongPass, "bob-session-42:" + bobPass} {
		assert.NotContains(t, logText, base64.StdEncoding.EncodeToString([]byte(pair)), "a Basic credential reached the log")
	}
}

// TestAuthLockout: after repeated failures from one address even the right
// password is refused for a while, for both protocols.
func TestAuthLockout(t *testing.T) {
	origin := sourceOrigin(t)
	h := startHopper(t, "--auth", "alice:"+alicePass)
	for i := 0; i < 10; i++ {
		require.Equal(t, 407, rawHTTP(t, h.Addr, "GET", origin, "alice", wrongPass).status)
	}
	assert.Equal(t, 407, rawHTTP(t, h.Addr, "GET", origin, "alice", alicePass).status)
	assert.Equal(t, byte(0x01), rawSOCKS5(t, h.Addr, "alice", alicePass, origin).authStatus)
	require.Eventually(t, func() bool { return len(h.records("client locked out after failed proxy logins")) == 1 },
		5*time.Second, 20*time.Millisecond, h.log())
	assert.NotContains(t, h.log(), alicePass)
}

// TestUsersReloadOnSIGHUP: the htpasswd file is re-read on SIGHUP; a bad
// file keeps the accounts in force.
func TestUsersReloadOnSIGHUP(t *testing.T) {
	origin := sourceOrigin(t)
	users := filepath.Join(t.TempDir(), "users")
	htpasswdFile(t, users, [2]string{"bob", bobPass})
	h := startHopper(t, "--users", users)
	assert.Equal(t, 200, rawHTTP(t, h.Addr, "GET", origin, "bob", bobPass).status)
	assert.Equal(t, 407, rawHTTP(t, h.Addr, "GET", origin, "carol", alicePass).status)

	htpasswdFile(t, users, [2]string{"carol", alicePass})
	h.signal(syscall.SIGHUP)
	require.Eventually(t, func() bool {
		return rawHTTP(t, h.Addr, "GET", origin, "carol", alicePass).status == 200
	}, 10*time.Second, 50*time.Millisecond)
	assert.Equal(t, 407, rawHTTP(t, h.Addr, "GET", origin, "bob", bobPass).status, "bob was removed")

	// A file with a non-bcrypt entry is refused; carol stays.
	require.NoError(t, writeFileAtomic(users, "dave:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n"))
	h.signal(syscall.SIGHUP)
	require.Eventually(t, func() bool { return len(h.records("users reload failed; keeping the previous accounts")) > 0 },
		10*time.Second, 20*time.Millisecond, h.log())
	assert.Equal(t, 200, rawHTTP(t, h.Addr, "GET", origin, "carol", alicePass).status)
}

// TestRefuseOpenProxy: listening beyond loopback without accounts does not
// start; the message names every way out.
func TestRefuseOpenProxy(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		cmd := exec.Command(hopperBin, "serve", "--listen", listen)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, "%s: %s", listen, out)
		assert.Equal(t, 2, ee.ExitCode(), listen)
		msg := string(out)
		assert.Equal(t, 1, strings.Count(msg, "\n"), "one line: %q", msg)
		for _, want := range []string{"--auth", "--users", "--allow-open"} {
			assert.Contains(t, msg, want, listen)
		}
	}
}

// TestACLEndToEnd runs the ACL matrix through the binary for HTTP forward,
// CONNECT and SOCKS5: allowed targets are served, denied ones get 403 or
// SOCKS reply 0x02 and an access-log line with result "denied".
func TestACLEndToEnd(t *testing.T) {
	a := httpOriginOn(t, "127.0.0.1")
	b := httpOriginOn(t, "127.0.0.2")
	c := httpOriginOn(t, "127.0.0.1")
	_, portA, _ := net.SplitHostPort(a)
	cfg := writeFile(t, "hopper.yaml", fmt.Sprintf(`auth: ["alice:pa", "bob:pb", "carol:pc"]
acl:
  alice: { cidrs: [127.0.0.1/32], ports: ["%s"] }
  bob:   { hosts: [localhost, "*.localhost"] }
`, portA))
	h := startHopper(t, "--config", cfg)

	pass := map[string]string{"alice": "pa", "bob": "pb", "carol": "pc"}
	cases := []struct {
		user, target string
		allowed      bool
	}{
		{"alice", a, true},
		{"alice", b, false},                           // outside the CIDR
		{"alice", c, false},                           // port not listed
		{"alice", "localhost:" + portA, false},        // a name matches no CIDR
		{"bob", "localhost:" + portA, true},           // host glob
		{"bob", a, false},                             // an IP matches no host glob
		{"bob-session-3", "localhost:" + portA, true}, // controls do not change the account
		{"carol", b, true},                            // no rule: anywhere
		{"carol", c, true},
	}
	denied := 0
	for _, tc := range cases {
		account := strings.SplitN(tc.user, "-", 2)[0]
		for _, method := range []string{"GET", "CONNECT"} {
			r := rawHTTP(t, h.Addr, method, tc.target, tc.user, pass[account])
			if tc.allowed {
				assert.Equal(t, 200, r.status, "%s %s %s: %s", tc.user, method, tc.target, r.body)
			} else {
				denied++
				assert.Equal(t, 403, r.status, "%s %s %s", tc.user, method, tc.target)
				assert.Equal(t, "hopper: access to "+tc.target+" is denied by policy\n", r.body)
			}
		}
		s := rawSOCKS5(t, h.Addr, tc.user, pass[account], tc.target)
		require.Equal(t, byte(0x00), s.authStatus, tc.user)
		if tc.allowed {
			assert.Equal(t, byte(0x00), s.reply, "%s socks5 %s", tc.user, tc.target)
			assert.True(t, strings.HasPrefix(s.body, "origin "), s.body)
		} else {
			denied++
			assert.Equal(t, byte(0x02), s.reply, "%s socks5 %s", tc.user, tc.target)
		}
	}
	assert.Equal(t, "origin "+a, curl(t, "-x", "http://alice:pa@"+h.Addr, "http://"+a+"/"))

	require.Eventually(t, func() bool {
		n := 0
		for _, rec := range h.records("tunnel") {
			if rec["result"] == "denied" {
				n++
			}
		}
		return n == denied
	}, 10*time.Second, 20*time.Millisecond, h.log())
}

// TestMaxConnsPerClientFlag: --max-conns-per-client caps one address while
// another is served.
func TestMaxConnsPerClientFlag(t *testing.T) {
	origin := sourceOrigin(t)
	h := startHopper(t, "--max-conns-per-client", "2", "--header-timeout", "30s")
	dialFrom := func(src string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
		c, err := d.Dial("tcp", h.Addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
		return c
	}
	dialFrom("127.0.0.5")
	dialFrom("127.0.0.5")
	over := dialFrom("127.0.0.5")
	n, err := over.Read(make([]byte, 1))
	assert.Zero(t, n)
	assert.Error(t, err, "closed at once")
	assert.NotErrorIs(t, err, os.ErrDeadlineExceeded)
	assert.Equal(t, "127.0.0.1", curl(t, "-x", "http://"+h.Addr, "http://"+origin+"/"))

	_, err = parseServe([]string{"--max-conns-per-client", "-1"}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--max-conns-per-client")
}
