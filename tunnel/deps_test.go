package tunnel

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// tunnel shares only dial and relay with the other front ends and the
// upstream pool; it must never import them.
func TestImportsStayWithinBoundaries(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	require.NoError(t, err)
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{"/socks", "/rotate", "/mitm", "/cmd/"} {
			if strings.HasPrefix(pkg, "github.com/hopper-proxy/hopper/") {
				require.NotContains(t, pkg, banned, "tunnel imports %s", pkg)
			}
		}
	}
}
