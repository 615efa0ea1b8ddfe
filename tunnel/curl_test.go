package tunnel

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
)

// requireCurl fails the test if curl, which the tests use as a real client,
// is missing.
func requireCurl(t *testing.T) {
	t.Helper()
	_, err := exec.LookPath("curl")
	require.NoError(t, err, "curl is needed as a real client")
}

// runCurl runs curl with args and no proxy settings from the environment,
// and returns its output; it fails the test on a curl error.
func runCurl(t *testing.T, args ...string) string {
	t.Helper()
	out, stderr, err := curl(t, args...)
	require.NoError(t, err, "curl %v: %s", args, stderr)
	return out
}

func curl(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	args = append([]string{"-sS", "--max-time", "8", "--noproxy", ""}, args...)
	cmd := exec.CommandContext(ctx, "curl", args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}
