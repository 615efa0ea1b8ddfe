package socks

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/internal/testnet"
	"github.com/hopper-proxy/hopper/judge"
)

// startTLSProxy is startProxy behind TLS termination, as on an HTTPS proxy
// port: every connection completes a TLS handshake with a self-signed
// certificate for 127.0.0.1, and ServeStream gets the *tls.Conn. It returns
// the pool a client needs to trust the proxy.
func startTLSProxy(t *testing.T, cfg Config) (*testProxy, *x509.CertPool) {
	t.Helper()
	cert, err := judge.SelfSigned(time.Now(), "127.0.0.1")
	require.NoError(t, err)
	srvCfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	p := startProxyWith(t, cfg, func(c net.Conn) net.Conn {
		_ = c.SetDeadline(time.Now().Add(testTimeout))
		tc := tls.Server(c, srvCfg)
		if err := tc.Handshake(); err != nil {
			_ = c.Close()
			return nil
		}
		return tc
	})
	return p, roots
}

// A SOCKS5 session inside TLS logs "tls": true on its access line, as
// tunnel's lines for HTTP inside TLS do; the same session on a plain
// connection carries no such field. Both tunnels work end to end.
func TestSOCKS5InsideTLSLogsTLS(t *testing.T) {
	echo := startEcho(t, "127.0.0.1")
	cases := []struct {
		name    string
		overTLS bool
	}{
		{name: "plain"},
		{name: "inside TLS", overTLS: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Dialer: &dial.Direct{}}
			var p *testProxy
			var c net.Conn
			if tc.overTLS {
				var roots *x509.CertPool
				p, roots = startTLSProxy(t, cfg)
				tlsConn := tls.Client(testnet.Dial(t, p.addr), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
				require.NoError(t, tlsConn.Handshake())
				c = tlsConn
			} else {
				p = startProxy(t, cfg)
				c = testnet.Dial(t, p.addr)
			}
			require.Equal(t, byte(0x00), connect5(t, c, echo))
			testnet.EchoRoundTrip(t, c, "hello through socks5")
			require.NoError(t, c.Close())

			logs := p.tunnelLogs(t, 1)
			require.Len(t, logs, 1)
			f := logs[0].ContextMap()
			assert.Equal(t, "socks5", f["proto"])
			assert.Equal(t, "ok", f["result"])
			assert.Equal(t, echo, f["target"])
			if tc.overTLS {
				assert.Equal(t, true, f["tls"], "%v", f)
			} else {
				assert.NotContains(t, f, "tls")
			}
		})
	}
}
