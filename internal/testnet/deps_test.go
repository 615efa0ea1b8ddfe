package testnet

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const module = "github.com/hopper-proxy/hopper/"

// testnet and dialtest are for tests: no package's own code imports them.
func TestOnlyTestsImportTestnet(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"...").CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, " ")
		for _, fixture := range []string{"internal/testnet", "internal/testnet/dialtest"} {
			assert.NotContains(t, strings.Fields(imports), module+fixture, "%s imports %s outside its tests", pkg, fixture)
		}
	}
}

// testnet leans on no package of hopper's but the leaf fingerprint, and
// dialtest on none but dial, so the tests of the others can import them
// without a cycle.
func TestTestnetImportsOnlyLeaves(t *testing.T) {
	for dir, leaf := range map[string]string{".": "fingerprint", "./dialtest": "dial"} {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", dir).CombinedOutput()
		require.NoError(t, err, "%s", out)
		for _, dep := range strings.Fields(string(out)) {
			if rel, ours := strings.CutPrefix(dep, module); ours && !strings.HasPrefix(rel, "internal/testnet") {
				assert.Equal(t, leaf, rel, "%s imports %s", dir, dep)
			}
		}
	}
}
