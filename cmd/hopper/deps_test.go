package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPackageBoundaries keeps the layout DESIGN.md fixes: the front ends and
// the egress side share only the leaf packages dial and relay, and the leaves
// depend on nothing of hopper's.
func TestPackageBoundaries(t *testing.T) {
	const mod = "github.com/hopper-proxy/hopper/"
	peers := []string{"tunnel", "socks", "rotate", "mitm"}
	allowed := map[string][]string{
		"dial":   nil,
		"relay":  nil,
		"tunnel": {"dial", "relay"},
		"socks":  {"dial", "relay"},
		"rotate": {"dial", "relay"},
		"mitm":   {"dial", "relay", "fingerprint"},
	}
	// fingerprint parses ClientHellos and HTTP/2 prefaces for the judge and
	// the interception stage: a leaf, like dial and relay.
	allowed["fingerprint"] = nil
	for pkg, ok := range allowed {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "../../"+pkg).CombinedOutput()
		if strings.Contains(string(out), "no Go files") || strings.Contains(string(out), "matched no packages") {
			continue // package not written yet
		}
		require.NoError(t, err, "%s", out)
		for _, dep := range strings.Fields(string(out)) {
			rel, ours := strings.CutPrefix(dep, mod)
			if !ours || rel == pkg || strings.HasPrefix(rel, pkg+"/") {
				continue
			}
			top, _, _ := strings.Cut(rel, "/")
			require.Contains(t, ok, top, "%s must not import %s (allowed: %v; peers %v never import each other)", pkg, dep, ok, peers)
		}
	}
}
