package dial

// RootCause follows wraps to the innermost error, which for network failures
// is the system's own words ("connection refused", "no such host"), for the
// one-line bodies front ends send clients. Of an error wrapping several
// ("%w: %w", a sentinel then its cause) it follows the last. When the
// innermost is a bare sentinel (sentinel reports it), its wrapper, which adds
// the detail, is returned instead.
func RootCause(err error, sentinel func(error) bool) error {
	var prev error
	for {
		var next error
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			next = u.Unwrap()
		case interface{ Unwrap() []error }:
			if list := u.Unwrap(); len(list) > 0 {
				next = list[len(list)-1]
			}
		}
		if next == nil {
			if prev != nil && sentinel(err) {
				return prev
			}
			return err
		}
		prev, err = err, next
	}
}
