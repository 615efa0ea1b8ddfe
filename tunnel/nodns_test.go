package tunnel

import (
	"context"
	"net"
	"syscall"
)

// noDNS is a resolver that answers every query with "no such host" without
// sending a packet: tests stay on loopback.
var noDNS = &net.Resolver{
	PreferGo: true,
	Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
	},
}
