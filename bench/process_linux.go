package bench

import (
	"os"
	"syscall"
)

// measurable: the harness reads its figures from Linux's /proc.
const measurable = true

// groupAttr starts a proxy in a process group of its own, so forked
// children are signalled with it, and kills it if the harness dies.
func groupAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signalGroup sends sig to p's process group.
func signalGroup(p *os.Process, sig syscall.Signal) {
	_ = syscall.Kill(-p.Pid, sig)
}
