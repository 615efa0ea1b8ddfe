package mitm

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// mitm shares only dial and relay with the front ends and the upstream
// pool, and uses the leaf fingerprint; it must never import the others.
func TestImportsStayWithinBoundaries(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	require.NoError(t, err)
	for _, pkg := range strings.Fields(string(out)) {
		rel, ours := strings.CutPrefix(pkg, "github.com/hopper-proxy/hopper/")
		if !ours || rel == "mitm" {
			continue
		}
		require.Contains(t, []string{"dial", "relay", "fingerprint"}, rel, "mitm imports %s", pkg)
	}
}
