package admin

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestImports keeps admin a reader of the other packages: it consumes the
// dial contract and rotate's status, never the front ends or mitm, which
// report to it through dial.Observer.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	const mod = "github.com/hopper-proxy/hopper/"
	for _, dep := range strings.Fields(string(out)) {
		rel, ours := strings.CutPrefix(dep, mod)
		if !ours {
			continue
		}
		top, _, _ := strings.Cut(rel, "/")
		require.Contains(t, []string{"admin", "dial", "relay", "rotate"}, top, "admin must not import %s", dep)
	}
}
