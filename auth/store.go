package auth

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/hopper-proxy/hopper/dial"
)

// Errors a Store returns; each wraps dial.ErrAuth so front ends answer 407 or
// SOCKS status 0x01 without knowing which it was.
var (
	ErrBadCredentials = fmt.Errorf("%w: unknown user or wrong password", dial.ErrAuth)
	ErrRateLimited    = fmt.Errorf("%w: too many failed attempts from this address", dial.ErrAuth)
	// ErrUsersFile is wrapped by problems in an htpasswd file.
	ErrUsersFile = errors.New("bad users file")
)

// Config configures a Store.
type Config struct {
	// Static holds "user:pass" accounts (--auth, repeatable).
	Static []string
	// UsersFile is an htpasswd file with bcrypt entries (htpasswd -B); ""
	// means none. Reload re-reads it.
	UsersFile string
	// MaxFailures failed attempts from one client address within
	// FailureWindow lock that address out for Lockout. Defaults 10, 1m, 1m.
	MaxFailures   int
	FailureWindow time.Duration
	Lockout       time.Duration
	// Logger reports reloads and lockouts (never passwords). Nil: silent.
	Logger *zap.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// credential is one account's secret: a SHA-256 of a static password
// (compared in constant time) or a bcrypt hash.
type credential struct {
	static [sha256.Size]byte
	bcrypt []byte
}

// Store authenticates proxy accounts. It is safe for concurrent use; Reload
// swaps the account table atomically.
type Store struct {
	cfg     Config
	log     *zap.Logger
	static  map[string]credential
	file    atomic.Pointer[map[string]credential]
	limiter limiter
	// verified caches successful bcrypt checks, since bcrypt costs tens of
	// milliseconds and clients authenticate every connection.
	verified sync.Map // [32]byte → time.Time (expiry)
	nVerif   atomic.Int64
	// dummy is compared against for unknown users so that a miss costs as
	// much as a wrong password.
	dummy []byte
}

var _ dial.Authenticator = (*Store)(nil)

// New builds a Store from cfg, reading UsersFile once.
func New(cfg Config) (*Store, error) {
	if cfg.MaxFailures == 0 {
		cfg.MaxFailures = 10
	}
	if cfg.FailureWindow == 0 {
		cfg.FailureWindow = time.Minute
	}
	if cfg.Lockout == 0 {
		cfg.Lockout = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Store{cfg: cfg, log: cfg.Logger, static: make(map[string]credential)}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.limiter = limiter{max: cfg.MaxFailures, window: cfg.FailureWindow, lockout: cfg.Lockout, entries: make(map[string]*failures)}
	for _, up := range cfg.Static {
		user, pass, ok := strings.Cut(up, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("--auth: %q is not user:pass", redactPair(up))
		}
		s.static[user] = credential{static: sha256.Sum256([]byte(pass))}
	}
	if cfg.UsersFile != "" {
		var secret [16]byte
		_, _ = rand.Read(secret[:])
		dummy, err := bcrypt.GenerateFromPassword(secret[:], bcrypt.DefaultCost)
		if err != nil {
			return nil, err
		}
		s.dummy = dummy
		if err := s.Reload(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Enabled reports whether any account exists; a Store without accounts
// should not be installed as the Authenticator.
func (s *Store) Enabled() bool { return len(s.static) > 0 || s.cfg.UsersFile != "" }

// Reload re-reads UsersFile. On error the previous accounts stay in force.
func (s *Store) Reload() error {
	if s.cfg.UsersFile == "" {
		return nil
	}
	data, err := os.ReadFile(s.cfg.UsersFile)
	if err != nil {
		return fmt.Errorf("%w: --users: %w", ErrUsersFile, err)
	}
	users, err := parseHtpasswd(s.cfg.UsersFile, data)
	if err != nil {
		return err
	}
	s.file.Store(&users)
	s.verified.Clear()
	s.nVerif.Store(0)
	s.log.Info("users loaded", zap.String("file", s.cfg.UsersFile), zap.Int("accounts", len(users)))
	return nil
}

func parseHtpasswd(name string, data []byte) (map[string]credential, error) {
	users := make(map[string]credential)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		user, hash, ok := strings.Cut(text, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("%w: %s:%d: expected user:hash", ErrUsersFile, name, line)
		}
		if !strings.HasPrefix(hash, "$2y$") && !strings.HasPrefix(hash, "$2a$") && !strings.HasPrefix(hash, "$2b$") {
			return nil, fmt.Errorf("%w: %s:%d: user %q: only bcrypt entries are accepted (write them with htpasswd -B)", ErrUsersFile, name, line, user)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("%w: %s:%d: user %q: %w", ErrUsersFile, name, line, user, err)
		}
		users[user] = credential{bcrypt: []byte(hash)}
	}
	return users, sc.Err()
}

// Authenticate implements dial.Authenticator.
func (s *Store) Authenticate(ctx context.Context, client net.Addr, user, pass string) (string, error) {
	ip := clientIP(client)
	now := s.cfg.Now()
	if s.limiter.locked(ip, now) {
		return "", ErrRateLimited
	}
	if s.check(user, pass, now) {
		return user, nil
	}
	if s.limiter.fail(ip, now) {
		s.log.Warn("client locked out after failed proxy logins", zap.String("client", ip), zap.Duration("for", s.cfg.Lockout))
	}
	return "", ErrBadCredentials
}

func (s *Store) check(user, pass string, now time.Time) bool {
	if c, ok := s.static[user]; ok {
		sum := sha256.Sum256([]byte(pass))
		return subtle.ConstantTimeCompare(sum[:], c.static[:]) == 1
	}
	var hash []byte
	if m := s.file.Load(); m != nil {
		if c, ok := (*m)[user]; ok {
			hash = c.bcrypt
		}
	}
	if hash == nil {
		if s.dummy != nil {
			_ = bcrypt.CompareHashAndPassword(s.dummy, []byte(pass))
		}
		return false
	}
	key := cacheKey(user, pass, hash)
	if exp, ok := s.verified.Load(key); ok && now.Before(exp.(time.Time)) {
		return true
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil {
		return false
	}
	// Bounded: past 4096 entries the cache is cleared rather than grown.
	if s.nVerif.Add(1) > 4096 {
		s.verified.Clear()
		s.nVerif.Store(1)
	}
	s.verified.Store(key, now.Add(5*time.Minute))
	return true
}

func cacheKey(user, pass string, hash []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(user))
	h.Write([]byte{0})
	h.Write([]byte(pass))
	h.Write([]byte{0})
	h.Write(hash)
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func clientIP(a net.Addr) string {
	if a == nil {
		return ""
	}
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

func redactPair(s string) string {
	user, _, _ := strings.Cut(s, ":")
	return user + ":***"
}
