package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// peer describes another proxy measured beside hopper, configured from a
// file the harness writes.
type peer struct {
	name    string
	binary  string
	pkg     string // what bench/peers.sh installs to provide binary
	fronts  []Front
	forward bool
	config  func(addr string) string
	argv    func(bin, conf, dir string) []string
}

// peerList is tinyproxy (CONNECT and forward), dante (SOCKS5) and glider
// (CONNECT, forward and SOCKS5 on one port).
func peerList() []peer {
	return []peer{
		{
			name: colTinyproxy, binary: "tinyproxy", pkg: "tinyproxy",
			fronts: []Front{FrontCONNECT}, forward: true,
			config: tinyproxyConfig,
			argv: func(bin, conf, _ string) []string {
				return []string{bin, "-d", "-c", conf}
			},
		},
		{
			name: colDante, binary: "danted", pkg: "dante-server",
			fronts: []Front{FrontSOCKS5},
			config: danteConfig,
			argv: func(bin, conf, dir string) []string {
				pid := filepath.Join(dir, filepath.Base(conf)+".pid")
				return []string{bin, "-f", conf, "-p", pid}
			},
		},
		{
			name: colGlider, binary: "glider", pkg: "glider",
			fronts: []Front{FrontCONNECT, FrontSOCKS5}, forward: true,
			config: gliderConfig,
			argv: func(bin, conf, _ string) []string {
				return []string{bin, "-config", conf}
			},
		},
	}
}

// tinyproxyConfig allows loopback clients, every CONNECT port (no
// ConnectPort line) and enough clients for the idle-tunnel scenario.
func tinyproxyConfig(addr string) string {
	host, port, _ := strings.Cut(addr, ":")
	return fmt.Sprintf(`Port %s
Listen %s
Timeout 600
MaxClients %d
LogLevel Critical
Allow 127.0.0.1
DisableViaHeader Yes
`, port, host, maxIdleTunnels+1000)
}

// danteConfig is an open SOCKS5 server for loopback clients and targets.
func danteConfig(addr string) string {
	host, port, _ := strings.Cut(addr, ":")
	return fmt.Sprintf(`logoutput: stderr
internal: %s port = %s
external: %s
clientmethod: none
socksmethod: none
user.privileged: root
user.notprivileged: nobody
timeout.negotiate: 30
timeout.io: 0
client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }
socks pass { from: 127.0.0.0/8 to: 127.0.0.0/8 command: connect }
`, host, port, host)
}

// gliderConfig is one mixed listener (HTTP proxy and SOCKS5, told apart by
// the first byte) with no forwarder, so glider dials targets itself, and
// without -verbose, so it logs nothing per connection. The SOCKS5 side also
// binds the same port number for UDP ASSOCIATE, which the harness never
// uses.
func gliderConfig(addr string) string {
	return fmt.Sprintf("listen=mixed://%s\n", addr)
}

// lookPeer finds a peer's binary; the sbin directories are searched too,
// since daemons live there and PATH may lack them.
func lookPeer(look func(string) (string, error), name string) (string, error) {
	if look != nil {
		return look(name)
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/usr/local/sbin", "/usr/local/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w", name, exec.ErrNotFound)
}

// peerSubject turns p into a column, or an absent one saying why.
func peerSubject(p peer, look func(string) (string, error), dir string) *subject {
	s := &subject{name: p.name, fronts: p.fronts, forward: p.forward}
	bin, err := lookPeer(look, p.binary)
	if err != nil {
		s.absent = "not installed (`make bench-peers` installs " + p.pkg + ")"
		return s
	}
	s.start = func(ctx context.Context) (*instance, error) {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		conf, err := os.CreateTemp(dir, p.binary+"-*.conf")
		if err != nil {
			return nil, fmt.Errorf("%s config: %w", p.name, err)
		}
		_, err = conf.WriteString(p.config(addr))
		if cerr := conf.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("%s config: %w", p.name, err)
		}
		proc, err := startProcess(ctx, p.name, addr, p.argv(bin, conf.Name(), dir), nil)
		if err != nil {
			return nil, err
		}
		return processInstance(proc), nil
	}
	return s
}
