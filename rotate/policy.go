package rotate

import (
	"errors"
	"fmt"
)

// Policy is how a pool chooses the upstream for a new connection.
type Policy uint8

// Selection policies. The zero value means "not set": a rule then uses its
// pool's policy, and a pool round robin.
const (
	PolicyDefault Policy = iota
	// PolicyRoundRobin hands out the healthy upstreams in turn: an exactly
	// even spread, and the selector's fastest path.
	PolicyRoundRobin
	// PolicyRandom picks a healthy upstream uniformly at random.
	PolicyRandom
	// PolicyLeastLatency draws two healthy upstreams at random and takes the
	// one with the lower latency (the prober's measure, else the requests'),
	// "power of two choices": fast exits carry most of the load, the slowest
	// carries none, every pick costs O(1), and no single exit takes all the
	// traffic. An upstream with no measurement yet wins, so it gets one.
	PolicyLeastLatency
	// PolicyWeighted picks at random in proportion to a score from latency
	// and success rate (see Stats.Score). Weights are recomputed when the
	// snapshot changes, after each probe round, and at least every 10s while
	// the policy is in use.
	PolicyWeighted
	policyEnd
)

// ErrBadPolicy is wrapped by ParsePolicy and Policy.Validate failures.
var ErrBadPolicy = errors.New("bad selection policy")

var policyNames = [...]string{
	PolicyDefault:      "",
	PolicyRoundRobin:   "round-robin",
	PolicyRandom:       "random",
	PolicyLeastLatency: "least-latency",
	PolicyWeighted:     "weighted",
}

// ParsePolicy reads "round-robin", "random", "least-latency" or "weighted";
// "" is PolicyDefault. Anything else is an error wrapping ErrBadPolicy.
func ParsePolicy(s string) (Policy, error) {
	for i, n := range policyNames {
		if n == s {
			return Policy(i), nil
		}
	}
	return PolicyDefault, fmt.Errorf("%w %q: want round-robin, random, least-latency or weighted", ErrBadPolicy, s)
}

// String is the policy's name ("" for PolicyDefault).
func (p Policy) String() string {
	if p < policyEnd {
		return policyNames[p]
	}
	return "invalid"
}

// Validate reports an unknown policy value.
func (p Policy) Validate() error {
	if p >= policyEnd {
		return fmt.Errorf("%w: unknown value %d", ErrBadPolicy, uint8(p))
	}
	return nil
}

// MarshalText renders the policy's name.
func (p Policy) MarshalText() ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return []byte(p.String()), nil
}

// UnmarshalText reads a policy name, so Policy works as a YAML value and a
// flag (encoding.TextUnmarshaler). Unknown names fail.
func (p *Policy) UnmarshalText(b []byte) error {
	v, err := ParsePolicy(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// or returns p, or def when p is PolicyDefault.
func (p Policy) or(def Policy) Policy {
	if p == PolicyDefault {
		return def
	}
	return p
}
