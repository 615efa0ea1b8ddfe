package mitm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Leaf validity: browsers reject server certificates valid for more than 398
// days; leaves are backdated an hour for clock skew and live a year, and are
// minted again once less than a day is left.
const (
	leafBackdate = time.Hour
	leafLifetime = 365 * 24 * time.Hour
	leafRenewal  = 24 * time.Hour
)

// ErrBadHost is wrapped when a leaf is asked for a name that cannot be one
// (empty, too long, or with characters no host name has).
var ErrBadHost = errors.New("bad host name for a certificate")

// leafCache mints leaf certificates signed by the CA and keeps them in a
// bounded LRU. Every leaf shares one ECDSA P-256 key made when the cache is
// (once per process, never the CA's key), so a new host costs one signature.
// Concurrent first requests for one host mint once (singleflight).
type leafCache struct {
	ca    *CA
	key   *ecdsa.PrivateKey
	cache *lru[string, *tls.Certificate]
	sf    singleflight.Group
	mints atomic.Uint64
	now   func() time.Time
}

func newLeafCache(ca *CA, max int) (*leafCache, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating leaf key: %w", err)
	}
	return &leafCache{ca: ca, key: key, cache: newLRU[string, *tls.Certificate](max), now: time.Now}, nil
}

// get returns the leaf for host (a DNS name or an IP literal), minting it if
// the cache has none or only one about to expire.
func (c *leafCache) get(host string) (*tls.Certificate, error) {
	host = normalizeHost(host)
	if cert, ok := c.cache.get(host); ok && c.fresh(cert) {
		return cert, nil
	}
	v, err, _ := c.sf.Do(host, func() (any, error) {
		if cert, ok := c.cache.get(host); ok && c.fresh(cert) {
			return cert, nil
		}
		cert, err := c.mint(host)
		if err != nil {
			return nil, err
		}
		c.cache.add(host, cert)
		return cert, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*tls.Certificate), nil
}

func (c *leafCache) fresh(cert *tls.Certificate) bool {
	return c.now().Add(leafRenewal).Before(cert.Leaf.NotAfter)
}

// mint signs a new leaf for host.
func (c *leafCache) mint(host string) (*tls.Certificate, error) {
	if !validCertHost(host) {
		return nil, fmt.Errorf("%w: %q", ErrBadHost, host)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := c.now()
	notAfter := now.Add(leafLifetime)
	if caEnd := c.ca.cert.NotAfter; notAfter.After(caEnd) {
		notAfter = caEnd
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: host, Organization: []string{"hopper"}},
		NotBefore:             now.Add(-leafBackdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.ca.cert, c.key.Public(), c.ca.key)
	if err != nil {
		return nil, fmt.Errorf("signing leaf for %s: %w", host, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing leaf for %s: %w", host, err)
	}
	c.mints.Add(1)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: c.key, Leaf: leaf}, nil
}

// normalizeHost lowercases host and drops a final dot and IPv6 brackets.
func normalizeHost(host string) string {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	return host
}

// validCertHost reports whether host may be a certificate's subject: an IP
// literal or 1 to 253 bytes of letters, digits, '-', '_' and '.'.
func validCertHost(host string) bool {
	if net.ParseIP(host) != nil {
		return true
	}
	if host == "" || len(host) > 253 {
		return false
	}
	for i := 0; i < len(host); i++ {
		switch c := host[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// IssueLeaf signs a certificate for names (host names or IP literals) with
// a key of its own, valid like the leaves intercepted clients see (a year,
// never past the CA's end). It is for servers hopper runs itself, such as
// the judge's TLS port; interception mints through its own cache.
func (ca *CA) IssueLeaf(now time.Time, names ...string) (*tls.Certificate, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: no name", ErrBadHost)
	}
	c, err := newLeafCache(ca, 1)
	if err != nil {
		return nil, err
	}
	c.now = func() time.Time { return now }
	cert, err := c.mint(normalizeHost(names[0]))
	if err != nil || len(names) == 1 {
		return cert, err
	}
	// Re-sign with every name: mint covers one.
	tmpl := *cert.Leaf
	tmpl.DNSNames, tmpl.IPAddresses = nil, nil
	for _, n := range names {
		n = normalizeHost(n)
		if !validCertHost(n) {
			return nil, fmt.Errorf("%w: %q", ErrBadHost, n)
		}
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	if tmpl.SerialNumber, err = randomSerial(); err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, ca.cert, c.key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("signing leaf for %v: %w", names, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing leaf for %v: %w", names, err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: c.key, Leaf: leaf}, nil
}
