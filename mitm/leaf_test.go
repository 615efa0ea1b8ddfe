package mitm

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLeafForNameAndIP(t *testing.T) {
	ca := testCA(t)
	c, err := newLeafCache(ca, 16)
	require.NoError(t, err)
	roots := ca.CertPool()

	for _, host := range []string{"shop.example", "WWW.Shop.Example.", "127.0.0.1", "[::1]", "2001:db8::1"} {
		cert, err := c.get(host)
		require.NoError(t, err, host)
		leaf := cert.Leaf
		want := normalizeHost(host)
		_, err = leaf.Verify(x509.VerifyOptions{DNSName: want, Roots: roots})
		require.NoError(t, err, "leaf for %s verifies against the CA", host)
		if ip := net.ParseIP(want); ip != nil {
			require.Len(t, leaf.IPAddresses, 1)
			assert.True(t, leaf.IPAddresses[0].Equal(ip))
			assert.Empty(t, leaf.DNSNames)
		} else {
			assert.Equal(t, []string{want}, leaf.DNSNames)
		}
		assert.False(t, leaf.IsCA)
		assert.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, leaf.ExtKeyUsage)
		assert.LessOrEqual(t, leaf.NotAfter.Sub(leaf.NotBefore), 397*24*time.Hour, "validity at most 397 days")
		assert.True(t, leaf.NotBefore.Before(time.Now()))
	}
}

func TestLeavesShareOneKeyThatIsNotTheCAs(t *testing.T) {
	ca := testCA(t)
	c, err := newLeafCache(ca, 16)
	require.NoError(t, err)
	a, err := c.get("a.example")
	require.NoError(t, err)
	b, err := c.get("b.example")
	require.NoError(t, err)
	assert.Same(t, a.PrivateKey, b.PrivateKey, "one leaf key per process")
	pub := a.Leaf.PublicKey.(*ecdsa.PublicKey)
	assert.True(t, pub.Equal(b.Leaf.PublicKey))
	assert.False(t, pub.Equal(ca.Certificate().PublicKey), "never the CA key")
	assert.NotEqual(t, a.Leaf.SerialNumber, b.Leaf.SerialNumber)
	assert.Greater(t, a.Leaf.SerialNumber.BitLen(), 64, "random 128-bit serials")

	other, err := newLeafCache(ca, 16)
	require.NoError(t, err)
	o, err := other.get("a.example")
	require.NoError(t, err)
	assert.False(t, pub.Equal(o.Leaf.PublicKey), "a new process (cache) has a new key")
}

func TestLeafCacheIsBoundedAndRenews(t *testing.T) {
	ca := testCA(t)
	c, err := newLeafCache(ca, 3)
	require.NoError(t, err)
	for i := range 10 {
		_, err := c.get(fmt.Sprintf("h%d.example", i))
		require.NoError(t, err)
	}
	assert.Equal(t, 3, c.cache.len())
	assert.EqualValues(t, 10, c.mints.Load())

	first, err := c.get("h9.example")
	require.NoError(t, err)
	assert.EqualValues(t, 10, c.mints.Load(), "cached")

	// A leaf about to expire is minted again.
	c.now = func() time.Time { return time.Now().Add(leafLifetime - time.Hour) }
	renewed, err := c.get("h9.example")
	require.NoError(t, err)
	assert.EqualValues(t, 11, c.mints.Load())
	assert.NotEqual(t, first.Leaf.SerialNumber, renewed.Leaf.SerialNumber)
}

func TestLeafRejectsBadNames(t *testing.T) {
	c, err := newLeafCache(testCA(t), 4)
	require.NoError(t, err)
	for _, h := range []string{"", "a b", "x/y", "*.example", string(make([]byte, 300))} {
		_, err := c.get(h)
		require.ErrorIs(t, err, ErrBadHost, "%q", h)
	}
}

// A hundred clients asking for one new host at once get their handshakes
// done with a single leaf minted.
//
// A hundred handshakes under -race on a loaded machine can take the clients
// longer than the default SniffTimeout (3s) between hopper's 200 and their
// ClientHello, and a stream silent that long is spliced to the origin
// instead (whose certificate the clients rightly refuse). Sniffing and the
// handshake deadline are not what this test is about: both are given the
// same bound as the clients' own deadline.
func TestConcurrentFirstHandshakesMintOnce(t *testing.T) {
	w := newWorld(t, http.NotFoundHandler(), worldOpts{cfg: func(c *Config) {
		c.SniffTimeout, c.HandshakeTimeout = handshakeDeadline, handshakeDeadline
	}})
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs <- handshakeThrough(w, "shop.example:443", "shop.example")
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	st := w.ic.Stats()
	assert.EqualValues(t, 1, st.LeavesMinted, "one leaf for 100 concurrent first handshakes")
	assert.Equal(t, 1, st.Leaves)
}

// handshakeDeadline bounds a handshakeThrough.
const handshakeDeadline = 20 * time.Second

// handshakeThrough opens a CONNECT tunnel through the world's front end and
// completes a TLS handshake trusting only hopper's CA.
func handshakeThrough(w *world, target, sni string) error {
	c, err := net.DialTimeout("tcp", w.fe.ln.Addr().String(), 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(handshakeDeadline))
	if _, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target); err != nil {
		return err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("CONNECT: %s", resp.Status)
	}
	tc := tls.Client(c, &tls.Config{ServerName: sni, RootCAs: w.ca.CertPool(), NextProtos: []string{"h2", "http/1.1"}})
	if err := tc.Handshake(); err != nil {
		return err
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
		return fmt.Errorf("ALPN %q, want h2", p)
	}
	return tc.Close()
}
