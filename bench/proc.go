package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat times; Linux fixes it at
// 100 on every architecture the harness runs on.
const clockTicks = 100

// ErrProc marks a failure to read a process's figures from /proc.
var ErrProc = errors.New("bench: reading /proc")

// procStat is what the harness needs from /proc/PID/stat.
type procStat struct {
	ppid                         int
	utime, stime, cutime, cstime int64 // clock ticks
}

func readStat(pid int) (procStat, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, fmt.Errorf("%w: %w", ErrProc, err)
	}
	return parseStat(pid, data)
}

// parseStat parses the text of /proc/PID/stat.
func parseStat(pid int, data []byte) (procStat, error) {
	// The command name (field 2) may hold spaces and parentheses: fields
	// are counted from the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("%w: /proc/%d/stat: no command name", ErrProc, pid)
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state); utime is field 14, so f[11].
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("%w: /proc/%d/stat: %d fields", ErrProc, pid, len(f))
	}
	var s procStat
	var perr error
	num := func(k int) int64 {
		v, err := strconv.ParseInt(f[k], 10, 64)
		if err != nil && perr == nil {
			perr = fmt.Errorf("%w: /proc/%d/stat field %d: %w", ErrProc, pid, k+3, err)
		}
		return v
	}
	s.ppid = int(num(1))
	s.utime, s.stime, s.cutime, s.cstime = num(11), num(12), num(13), num(14)
	return s, perr
}

// children lists the processes whose parent is pid.
func children(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == pid {
			continue
		}
		if st, err := readStat(p); err == nil && st.ppid == pid {
			out = append(out, p)
		}
	}
	return out
}

// processTree is pid and all its descendants alive now.
func processTree(pid int) []int {
	tree := []int{pid}
	for i := 0; i < len(tree) && len(tree) < 4096; i++ {
		tree = append(tree, children(tree[i])...)
	}
	return tree
}

// cpuSeconds is the user+system CPU of pid's tree: every live process, plus
// what the root has collected from children that exited.
func cpuSeconds(pid int) (float64, error) {
	var ticks int64
	for i, p := range processTree(pid) {
		st, err := readStat(p)
		if err != nil {
			if i == 0 {
				return 0, err
			}
			continue // exited meanwhile; the root's cutime has it
		}
		ticks += st.utime + st.stime
		if i == 0 {
			ticks += st.cutime + st.cstime
		}
	}
	return float64(ticks) / clockTicks, nil
}

// memoryKiB is the resident memory of pid's tree. A single process reports
// VmRSS from /proc/PID/status. A tree of forked processes sums Pss from
// /proc/PID/smaps_rollup instead, so pages the children share with their
// parent are counted once rather than once per process.
func memoryKiB(pid int) (int64, error) {
	tree := processTree(pid)
	if len(tree) == 1 {
		return statusField(pid, "VmRSS:")
	}
	var sum int64
	for i, p := range tree {
		v, err := rollupField(p, "Pss:")
		if err != nil {
			if i == 0 {
				return 0, err
			}
			continue
		}
		sum += v
	}
	return sum, nil
}

func statusField(pid int, name string) (int64, error) {
	return kiBField(filepath.Join("/proc", strconv.Itoa(pid), "status"), name)
}

func rollupField(pid int, name string) (int64, error) {
	return kiBField(filepath.Join("/proc", strconv.Itoa(pid), "smaps_rollup"), name)
}

// kiBField reads a "Name:   1234 kB" line.
func kiBField(path, name string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrProc, err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			v, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%w: %s %s: %w", ErrProc, path, name, err)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("%w: %s has no %s", ErrProc, path, name)
}
