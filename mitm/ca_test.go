package mitm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestInitCAWritesKeyWithMode0600(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "hopper")
	ca, err := InitCA(dir, time.Now())
	require.NoError(t, err)

	st, err := os.Stat(filepath.Join(dir, CAKeyFile))
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o600), st.Mode().Perm(), "CA key file mode")
	dst, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o700), dst.Mode().Perm(), "CA dir mode")

	cert := ca.Certificate()
	assert.True(t, cert.IsCA)
	assert.NotZero(t, cert.KeyUsage&x509.KeyUsageCertSign)
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	require.True(t, ok, "ECDSA key")
	assert.Equal(t, elliptic.P256(), pub.Curve)
	assert.Equal(t, dir, ca.Dir())

	loaded, err := LoadCA(dir)
	require.NoError(t, err)
	assert.Equal(t, ca.DER(), loaded.DER())
}

func TestInitCARefusesToReplace(t *testing.T) {
	dir := t.TempDir()
	first, err := InitCA(dir, time.Now())
	require.NoError(t, err)
	_, err = InitCA(dir, time.Now())
	require.ErrorIs(t, err, ErrCAExists)
	again, err := LoadCA(dir)
	require.NoError(t, err)
	assert.Equal(t, first.DER(), again.DER(), "the first CA is untouched")
}

func TestLoadCAMissing(t *testing.T) {
	_, err := LoadCA(t.TempDir())
	require.ErrorIs(t, err, ErrNoCA)
	require.ErrorIs(t, err, fs.ErrNotExist)
}

func TestLoadCARejectsKeyReadableByOthers(t *testing.T) {
	dir := t.TempDir()
	_, err := InitCA(dir, time.Now())
	require.NoError(t, err)
	require.NoError(t, os.Chmod(filepath.Join(dir, CAKeyFile), 0o644))
	_, err = LoadCA(dir)
	require.ErrorIs(t, err, ErrBadCA)
}

func TestLoadCARejectsForeignKey(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	_, err := InitCA(a, time.Now())
	require.NoError(t, err)
	_, err = InitCA(b, time.Now())
	require.NoError(t, err)
	key, err := os.ReadFile(filepath.Join(b, CAKeyFile))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(a, CAKeyFile), key, 0o600))
	_, err = LoadCA(a)
	require.ErrorIs(t, err, ErrBadCA)
	assert.NotContains(t, err.Error(), "PRIVATE KEY")
}

func TestCANeverPrintsItsKey(t *testing.T) {
	dir := t.TempDir()
	ca, err := InitCA(dir, time.Now())
	require.NoError(t, err)
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	require.NoError(t, err)
	block, _ := pem.Decode(keyPEM)
	require.NotNil(t, block)
	for _, s := range []string{fmt.Sprint(ca), fmt.Sprintf("%+v", ca), fmt.Sprintf("%#v", ca), ca.String()} {
		assert.NotContains(t, s, "PRIVATE")
		assert.NotContains(t, s, string(keyPEM[30:60]))
		assert.Contains(t, s, ca.Fingerprint())
	}
}

func TestCAExportFormats(t *testing.T) {
	ca := testCA(t)
	block, rest := pem.Decode(ca.PEM())
	require.NotNil(t, block)
	assert.Empty(t, rest)
	assert.Equal(t, "CERTIFICATE", block.Type)
	assert.Equal(t, ca.DER(), block.Bytes)
	parsed, err := x509.ParseCertificate(ca.DER())
	require.NoError(t, err)
	assert.True(t, parsed.Equal(ca.Certificate()))

	// Callers cannot change the CA through what they get.
	der := ca.DER()
	der[0] ^= 0xff
	assert.NotEqual(t, der, ca.DER())
}

func TestCAServeHTTP(t *testing.T) {
	ca := testCA(t)
	srv := httptest.NewServer(ca)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/ca.pem")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "application/x-pem-file", resp.Header.Get("Content-Type"))
	assert.Equal(t, ca.PEM(), body)

	resp, err = http.Post(srv.URL+"/ca.pem", "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

func TestParseCARejectsGarbage(t *testing.T) {
	for name, files := range map[string][2][]byte{
		"no pem":      {[]byte("hello"), []byte("key")},
		"not a cert":  {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2}}), nil},
		"key missing": {testCA(t).PEM(), []byte("nope")},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseCA(files[0], files[1], "")
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrBadCA))
		})
	}
}
