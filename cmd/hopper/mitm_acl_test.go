package main

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/mitm"
)

// With --mitm, a target the ACL denies still gets the error contract's 403
// (SOCKS reply 0x02) from the front end, not a 200 followed by an error
// inside TLS the client would have to set up first; allowed targets are
// intercepted as usual.
func TestMITMDeniedTargetGets403(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := runCmd("ca", "init", "--ca-dir", dir)
	require.Equal(t, 0, code, stderr)
	origin := uaOrigin(t)
	target := origin.Listener.Addr().String()
	cfg := writeFile(t, "hopper.yaml", `auth: ["alice:pa", "carol:pc"]
acl:
  alice: { cidrs: [127.0.0.2/32] }
`)
	h := startHopper(t, "--config", cfg, "--mitm", "--ca-dir", dir, "--profile", "chrome", "--insecure-origin")

	r := rawHTTP(t, h.Addr, "CONNECT", target, "alice", "pa")
	assert.Equal(t, 403, r.status)
	assert.Equal(t, "hopper: access to "+target+" is denied by policy\n", r.body)

	// Port 443 is what SOCKS interception takes; a name matches no CIDR.
	s := rawSOCKS5(t, h.Addr, "alice", "pa", "denied.example:443")
	require.Equal(t, byte(0x00), s.authStatus)
	assert.Equal(t, byte(0x02), s.reply, "SOCKS5 reply for a denied target")

	chrome, err := mitm.LookupProfile("chrome")
	require.NoError(t, err)
	out := curl(t, "--proxy", "http://carol:pc@"+h.Addr, "--cacert", filepath.Join(dir, mitm.CACertFile), origin.URL+"/")
	assert.Equal(t, fmt.Sprintf("ua=%s proto=HTTP/2.0", chrome.Header("User-Agent")), out, "an allowed target is intercepted")
}

// allowAll is an ACL check without rules.
func allowAll(*dial.Request) error { return nil }
