package bench

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

// buildTestHopper builds ./cmd/hopper of this module (with -race when the
// tests have it). A tree where it does not build fails the test: the
// harness is useless without it.
func buildTestHopper(t *testing.T) (bin, root string) {
	t.Helper()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	bin = filepath.Join(t.TempDir(), "hopper")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var flags []string
	if raceEnabled {
		flags = append(flags, "-race")
	}
	require.NoError(t, buildHopper(ctx, root, bin, flags...))
	return bin, root
}

// A tiny run of every scenario against direct, hopper and chained hopper:
// each bulk run checks its byte counts against the origin's (a mismatch
// fails Run), and every figure comes out positive. Timings are not judged.
func TestRunAgainstHopper(t *testing.T) {
	bin, root := buildTestHopper(t)
	self, err := os.Executable()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	rep, err := Run(ctx, Options{
		Duration:             150 * time.Millisecond,
		Reps:                 1,
		IdleTunnels:          100,
		NewTunnelConcurrency: 4,
		BulkStreams:          2,
		ForwardConns:         2,
		HopperBin:            bin,
		ModuleDir:            root,
		BareRelay:            []string{self},
		Logger:               zaptest.NewLogger(t),
	}, &out)
	t.Log(out.String())
	require.NoError(t, err)
	require.NotNil(t, rep)
	peers := len(peerList())
	assert.Empty(t, rep.Notes[:len(rep.Notes)-peers], "only the peers-off notes")

	require.Len(t, rep.Rows, 2*int(numMetrics)-3, "a row per metric and front; forward rows once")
	measured := []string{colDirect, colHopper, colChained, colBare, colBareChain}
	tlsRows := 0
	for _, row := range rep.Rows {
		if strings.HasPrefix(row.Key, "tls-") && row.Front == "CONNECT" {
			tlsRows++
			cell, ok := row.Cells[colMITM]
			if assert.True(t, ok, "%s has no MITM figure", row.Key) {
				assert.GreaterOrEqual(t, cell.Median, 0.0, "%s, MITM", row.Key)
				if !row.Process {
					assert.Positive(t, cell.Median, "%s, MITM", row.Key)
				}
			}
		} else {
			assert.NotContains(t, row.Cells, colMITM, "MITM is measured in the HTTPS rows over CONNECT only")
		}
		for _, col := range measured {
			if (col == colBare || col == colBareChain) && row.Front == "HTTP forward" {
				assert.NotContains(t, row.Cells, col, "the bare relay has no forward mode")
				continue
			}
			if col == colDirect && row.Process {
				assert.NotContains(t, row.Cells, col, row.Key)
				continue
			}
			cell, ok := row.Cells[col]
			if !assert.True(t, ok, "%s has no %s figure", row.Key, col) {
				continue
			}
			switch row.Key {
			case "rtt-added/" + row.Front:
				continue // a difference of two medians: any sign is a figure
			case "idle-open/" + row.Front:
				assert.InDelta(t, 100, cell.Median, 0, "every idle tunnel opened (%s, %s)", row.Key, col)
			}
			if row.Process && row.Unit == "s" {
				// CPU seconds come in clock ticks (10 ms): a tiny run may
				// take less than one.
				assert.GreaterOrEqual(t, cell.Median, 0.0, "%s, %s", row.Key, col)
				continue
			}
			assert.Positive(t, cell.Median, "%s, %s", row.Key, col)
		}
		for _, col := range []string{colTinyproxy, colDante, colGlider} {
			assert.NotContains(t, row.Cells, col, "peers are off")
		}
	}
	assert.Equal(t, 6, tlsRows, "six HTTPS figures over CONNECT")
	md := rep.Markdown()
	assert.Contains(t, out.String(), md, "Run prints the table")
	assert.Contains(t, md, "| bulk download, 1 tunnel | CONNECT | Gbit/s |")
	assert.Contains(t, md, "tinyproxy (not run)")
	assert.Contains(t, md, "| hopper ÷ bare relay |")
}

// Main writes the table to -out and reports bad usage before building
// anything.
func TestMainFlags(t *testing.T) {
	ctx := testContext(t)
	var stdout, stderr bytes.Buffer
	assert.Equal(t, 2, Main(ctx, []string{"-reps", "-1", "-out", "-"}, &stdout, &stderr))
	assert.Contains(t, stderr.String(), "reps")
	stderr.Reset()
	assert.Equal(t, 2, Main(ctx, []string{"-no-such-flag"}, &stdout, &stderr))
	assert.Equal(t, 2, Main(ctx, []string{"extra"}, &stdout, &stderr))
	assert.Equal(t, 0, Main(ctx, []string{"-h"}, &stdout, &stderr))
	assert.Contains(t, stderr.String(), "-duration")
}
