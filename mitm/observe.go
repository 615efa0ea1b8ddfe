package mitm

import "time"

// Observer is told what interception does, for metrics. Its methods are
// called on the request path and must not block.
type Observer interface {
	// InterceptedRequest reports one request served inside an intercepted
	// tunnel: the profile its identity left with ("mirror" for a client's
	// own fingerprint, "" when no identity was reached), the origin's
	// status (0 when none arrived), the access-log result ("ok",
	// "cooling-down", "timeout"...) and how long it took.
	InterceptedRequest(profile string, status int, result string, took time.Duration)
	// IdentityRotated reports one identity replaced, for one of the
	// Rotation* reasons.
	IdentityRotated(reason string)
}

// Why an identity was replaced (Observer.IdentityRotated).
const (
	RotationRequests   = "requests"          // it served RotateAfterRequests
	RotationTooMany    = "429"               // RotateOn429 and a 429 answer
	RotationForbidden  = "403"               // ForbiddenUntilRotate 403s in a row
	RotationUpstreamUp = "upstream-restored" // its upstream left quarantine
)

// nopObserver observes nothing.
type nopObserver struct{}

func (nopObserver) InterceptedRequest(string, int, string, time.Duration) {}
func (nopObserver) IdentityRotated(string)                                {}

// LeavesMinted is how many leaf certificates the interceptor has signed
// (cache misses); the rest of its handshakes reused a cached leaf.
func (ic *Interceptor) LeavesMinted() uint64 { return ic.leaves.mints.Load() }

// Identities is how many (upstream, site) identities the interceptor holds.
func (ic *Interceptor) Identities() int {
	ic.store.mu.Lock()
	defer ic.store.mu.Unlock()
	return ic.store.pairs.len()
}
