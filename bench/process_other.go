//go:build !linux

package bench

import (
	"os"
	"syscall"
)

// measurable: the harness reads its figures from Linux's /proc, which
// other systems lack; Run refuses there, but the package still builds so
// hopper does.
const measurable = false

func groupAttr() *syscall.SysProcAttr { return nil }

func signalGroup(p *os.Process, sig syscall.Signal) {
	if sig == syscall.SIGKILL {
		_ = p.Kill()
		return
	}
	_ = p.Signal(sig)
}
