package testnet

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const module = "github.com/hopper-proxy/hopper/"

// testnet is for tests: no package's own code imports it.
func TestOnlyTestsImportTestnet(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"...").CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, " ")
		assert.NotContains(t, strings.Fields(imports), module+"internal/testnet", "%s imports testnet outside its tests", pkg)
	}
}

// testnet leans on no package of hopper's but the leaf fingerprint, so the
// tests of the others can import it without a cycle.
func TestTestnetImportsOnlyLeaves(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, dep := range strings.Fields(string(out)) {
		if rel, ours := strings.CutPrefix(dep, module); ours && rel != "internal/testnet" {
			assert.Equal(t, "fingerprint", rel, "testnet imports %s", dep)
		}
	}
}
