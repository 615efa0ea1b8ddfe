package bench

import (
	"context"
	"os/exec"
	"testing"
	"time"

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

// Every peer starts from its generated config and carries every scenario of
// its front ends. A missing peer fails: .ci/deps (bench/peers.sh) installs
// them all.
func TestPeersInstalled(t *testing.T) {
	// Longer than testContext: glider passes no half-close on, so each bulk
	// stream through it ends only at its 5 s read deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o := testOrigins(t)
	for _, p := range peerList() {
		s := peerSubject(p, nil, t.TempDir())
		if !assert.NotNil(t, s.start, "%s: %s", p.name, s.absent) {
			continue
		}
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
}
