package bench

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseStat(t *testing.T) {
	// A command name with spaces and parentheses must not shift the fields.
	line := "4242 (a (weird) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 31 7 3 20 0 4 0 1000 2000000 500 18446744073709551615\n"
	st, err := parseStat(4242, []byte(line))
	require.NoError(t, err)
	assert.Equal(t, procStat{ppid: 17, utime: 250, stime: 31, cutime: 7, cstime: 3}, st)

	_, err = parseStat(1, []byte("1 (init) S 0 1"))
	require.ErrorIs(t, err, ErrProc)
	_, err = parseStat(1, []byte("no parenthesis"))
	require.ErrorIs(t, err, ErrProc)
}

func TestProcessFigures(t *testing.T) {
	cpu, err := cpuSeconds(os.Getpid())
	require.NoError(t, err)
	assert.GreaterOrEqual(t, cpu, 0.0)
	kib, err := memoryKiB(os.Getpid())
	require.NoError(t, err)
	assert.Positive(t, kib)

	// A forked tree: the child shows up under its parent and memory is
	// summed over both.
	cmd := exec.Command("sh", "-c", "sleep 5 & wait")
	require.NoError(t, cmd.Start())
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	var tree []int
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if tree = processTree(cmd.Process.Pid); len(tree) >= 2 {
			break
		}
	}
	require.GreaterOrEqual(t, len(tree), 2)
	kib, err = memoryKiB(cmd.Process.Pid)
	require.NoError(t, err)
	assert.Positive(t, kib)
	for _, pid := range tree[1:] {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}

	_, err = cpuSeconds(1 << 30)
	require.ErrorIs(t, err, ErrProc)
}
