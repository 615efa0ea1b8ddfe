//go:build !linux

package relay

import "net"

// newTCPMover is Linux only: elsewhere a raw TCP pair uses io.Copy (see
// pickMover), and a raw TCP source into anything else a pooled buffer.
func newTCPMover(p *pipe, dst net.Conn, src *net.TCPConn) mover { return nil }
