package bench

import (
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func notFound(name string) (string, error) { return "", exec.ErrNotFound }

// A peer whose binary is missing becomes a column that says so.
func TestPeerNotInstalled(t *testing.T) {
	for _, p := range peerList() {
		s := peerSubject(p, notFound, t.TempDir())
		assert.Nil(t, s.start)
		assert.Contains(t, s.absent, "not installed")
		assert.Contains(t, s.absent, p.pkg)
	}
}

// Installed peers start from the generated configs and carry every scenario
// of their front ends. Without them (no `make bench-peers`) there is
// nothing to run.
func TestPeersInstalled(t *testing.T) {
	ctx := testContext(t)
	o := testOrigins(t)
	ran := 0
	for _, p := range peerList() {
		s := peerSubject(p, nil, t.TempDir())
		if s.start == nil {
			t.Logf("%s: %s", p.name, s.absent)
			continue
		}
		ran++
		t.Run(p.name, func(t *testing.T) {
			inst, err := s.start(ctx)
			require.NoError(t, err)
			defer inst.stop()
			for _, f := range s.fronts {
				r := route{front: f, proxy: inst.addr}
				for _, mode := range []byte{modeDownload, modeUpload} {
					res, err := bulk(ctx, o, r, mode, 2, tiny)
					require.NoError(t, err, "bulk %s over %v", modeName(mode), f)
					assert.Positive(t, res.bytes)
				}
				nt := newTunnels(ctx, o, r, 4, tiny)
				require.NoError(t, nt.firstErr)
				assert.Positive(t, nt.ops)
				_, err := echoRTT(ctx, o, r, tiny)
				require.NoError(t, err)
				if s.forward {
					fw := forward(ctx, o, r, 2, tiny)
					require.NoError(t, fw.firstErr)
					assert.Positive(t, fw.ops)
				}
				cpu, err := cpuSeconds(inst.pid)
				require.NoError(t, err)
				assert.GreaterOrEqual(t, cpu, 0.0)
				idle, err := idleMemory(ctx, o, s, f, 100)
				require.NoError(t, err)
				assert.Equal(t, 100, idle.tunnels)
				assert.Positive(t, idle.fds)
				t.Logf("%s over %v: %.1f KiB, %.1f descriptors per idle tunnel", p.name, f, idle.kib, idle.fds)
			}
		})
	}
	if ran == 0 {
		t.Fatal("neither tinyproxy nor dante is installed: make test installs them (.ci/deps)")
	}
}
