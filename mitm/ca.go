package mitm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Files of a CA directory.
const (
	// CACertFile holds the CA certificate (PEM), the file users trust.
	CACertFile = "ca.pem"
	// CAKeyFile holds the CA private key (PKCS #8 PEM), mode 0600.
	CAKeyFile = "ca-key.pem"
)

// caValidity is how long a new CA is valid.
const caValidity = 10 * 365 * 24 * time.Hour

var (
	// ErrNoCA: the CA directory holds no CA yet (it also matches
	// fs.ErrNotExist). `hopper ca init` makes one.
	ErrNoCA = errors.New("no CA")
	// ErrCAExists: InitCA found a CA already; it never overwrites one.
	ErrCAExists = errors.New("a CA already exists")
	// ErrBadCA: the CA files exist but cannot be used (unparsable, key and
	// certificate do not match, not a CA, or the key is readable by others).
	ErrBadCA = errors.New("unusable CA")
)

// CA is hopper's certificate authority: it signs the leaf certificates that
// intercepted clients see. Its private key never leaves the value: no method
// returns it and its String names only the certificate.
type CA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
	dir  string
}

// DefaultCADir is the CA directory when --ca-dir is not given: "hopper"
// under the user's configuration directory (os.UserConfigDir).
func DefaultCADir() (string, error) {
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("finding the user config dir: %w", err)
	}
	return filepath.Join(d, "hopper"), nil
}

// InitCA makes a new ECDSA P-256 CA in dir (created with mode 0700 if
// missing): CAKeyFile with mode 0600, CACertFile with mode 0644. It fails
// with ErrCAExists rather than replace an existing CA, since every client
// trusting the old one would stop working.
func InitCA(dir string, now time.Time) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("%w in %s: remove %s and %s first to replace it (clients trusting it stop working)",
				ErrCAExists, dir, CACertFile, CAKeyFile)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating CA dir: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	name := "hopper MITM CA"
	if host != "" {
		name += " (" + host + ")"
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"hopper"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("signing CA certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding CA key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	// The key first, created exclusively with 0600 (umask can only narrow
	// it), so a crash leaves no certificate without its key.
	if err := writeExclusive(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeExclusive(certPath, certPEM, 0o644); err != nil {
		_ = os.Remove(keyPath)
		return nil, err
	}
	return LoadCA(dir)
}

func writeExclusive(path string, data []byte, mode fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s", ErrCAExists, path)
		}
		return fmt.Errorf("writing %s: %w", path, err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// LoadCA reads the CA in dir. A missing CA is ErrNoCA (and fs.ErrNotExist);
// a key file that group or others may read is ErrBadCA.
func LoadCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w in %s: %w", ErrNoCA, dir, err)
		}
		return nil, fmt.Errorf("reading CA certificate: %w", err)
	}
	st, err := os.Stat(keyPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w in %s: %w", ErrNoCA, dir, err)
		}
		return nil, fmt.Errorf("reading CA key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o; run chmod 600 on it", ErrBadCA, keyPath, st.Mode().Perm())
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("reading CA key: %w", err)
	}
	return parseCA(certPEM, keyPEM, dir)
}

func parseCA(certPEM, keyPEM []byte, dir string) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrBadCA, CACertFile)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadCA, CACertFile, err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%w: %s is not a CA certificate", ErrBadCA, CACertFile)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		// Never echo key material in errors.
		return nil, fmt.Errorf("%w: %s holds no PEM key", ErrBadCA, CAKeyFile)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		if k, ecErr := x509.ParseECPrivateKey(kb.Bytes); ecErr == nil {
			parsed, err = k, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not a PKCS #8 or EC private key", ErrBadCA, CAKeyFile)
	}
	key, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: %s holds an unsupported key type", ErrBadCA, CAKeyFile)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%w: %s does not belong to %s", ErrBadCA, CAKeyFile, CACertFile)
	}
	return &CA{
		cert: cert,
		key:  key,
		pem:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		dir:  dir,
	}, nil
}

// Certificate is the CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// PEM is the CA certificate in PEM, what `hopper ca export` prints and
// /ca.pem serves.
func (ca *CA) PEM() []byte { return bytes.Clone(ca.pem) }

// DER is the CA certificate in DER (`hopper ca export --format der`).
func (ca *CA) DER() []byte { return bytes.Clone(ca.cert.Raw) }

// Dir is the directory the CA was loaded from.
func (ca *CA) Dir() string { return ca.dir }

// Fingerprint is the SHA-256 of the certificate, in hex, for users to compare
// with what their trust store shows.
func (ca *CA) Fingerprint() string {
	sum := sha256.Sum256(ca.cert.Raw)
	return hex.EncodeToString(sum[:])
}

// CertPool is a new pool holding only the CA certificate (for clients that
// trust hopper, tests above all).
func (ca *CA) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// String names the certificate, never the key.
func (ca *CA) String() string {
	return fmt.Sprintf("CA %q (SHA-256 %s)", ca.cert.Subject.CommonName, ca.Fingerprint())
}

// GoString is String, so %#v does not print the key either.
func (ca *CA) GoString() string { return ca.String() }

// ServeHTTP serves the CA certificate in PEM, for the admin server's /ca.pem.
func (ca *CA) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/x-pem-file")
	h.Set("Content-Disposition", `attachment; filename="hopper-ca.pem"`)
	h.Set("Content-Length", strconv.Itoa(len(ca.pem)))
	h.Set("Cache-Control", "no-cache")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(ca.pem)
}

// randomSerial is a positive 128-bit serial number from crypto/rand.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}
