package rotate

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// RotateMode is how often the pool moves a client to another upstream.
type RotateMode uint8

// Rotation modes.
const (
	// RotatePerRequest picks the next upstream for every request, so each
	// forward request on a keep-alive client connection may leave through a
	// different exit. CONNECT and SOCKS tunnels are one request each.
	RotatePerRequest RotateMode = iota
	// RotatePerConnection keeps every request of one client connection
	// (dial.Request.ConnID) on one upstream. Requests without a ConnID
	// rotate per request.
	RotatePerConnection
	// RotateEveryN moves a client connection to another upstream every N
	// requests (dial.Request.Seq). Requests without a ConnID rotate per
	// request.
	RotateEveryN
)

// Rotation is a rotation mode with its N. The zero value is per-request.
// It reads and writes the --rotate syntax: "per-request", "per-connection",
// "every-N".
type Rotation struct {
	Mode  RotateMode
	Every int // N for RotateEveryN, at least 1
}

// ErrBadRotation is wrapped by ParseRotation and Rotation.Validate failures.
var ErrBadRotation = errors.New("bad rotation")

// ParseRotation reads "per-request", "per-connection" or "every-N" (N ≥ 1).
func ParseRotation(s string) (Rotation, error) {
	switch s {
	case "per-request":
		return Rotation{Mode: RotatePerRequest}, nil
	case "per-connection":
		return Rotation{Mode: RotatePerConnection}, nil
	}
	if n, ok := strings.CutPrefix(s, "every-"); ok {
		every, err := strconv.Atoi(n)
		if err == nil && every >= 1 && n[0] != '+' {
			return Rotation{Mode: RotateEveryN, Every: every}, nil
		}
	}
	return Rotation{}, fmt.Errorf("%w %q: want per-request, per-connection or every-N", ErrBadRotation, s)
}

func (r Rotation) String() string {
	switch r.Mode {
	case RotatePerRequest:
		return "per-request"
	case RotatePerConnection:
		return "per-connection"
	case RotateEveryN:
		return "every-" + strconv.Itoa(r.Every)
	default:
		return "invalid"
	}
}

// Validate reports an unknown mode or an every-N without a positive N.
func (r Rotation) Validate() error {
	switch {
	case r.Mode > RotateEveryN:
		return fmt.Errorf("%w: unknown mode %d", ErrBadRotation, r.Mode)
	case r.Mode == RotateEveryN && r.Every < 1:
		return fmt.Errorf("%w: every-N needs N >= 1", ErrBadRotation)
	}
	return nil
}

// MarshalText renders the --rotate syntax.
func (r Rotation) MarshalText() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return []byte(r.String()), nil
}

// UnmarshalText reads the --rotate syntax, so Rotation works as a YAML value
// and, through encoding.TextUnmarshaler, as a flag.
func (r *Rotation) UnmarshalText(b []byte) error {
	v, err := ParseRotation(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}
