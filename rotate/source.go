package rotate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// Errors a list source fails with (wrapped, with the source's name).
var (
	// ErrListTooLarge: a list exceeds UpdaterConfig.MaxListSize.
	ErrListTooLarge = errors.New("list too large")
	// ErrFetch: a list URL answered with a non-2xx status.
	ErrFetch = errors.New("fetching list failed")
	// ErrEmptyList: a source yielded no usable entry.
	ErrEmptyList = errors.New("list has no usable entry")
)

// isURL reports whether a source names an http(s) URL rather than a file.
func isURL(src string) bool {
	lower := strings.ToLower(src)
	return strings.HasPrefix(lower, "http://") || strings.HasPrefix(lower, "https://")
}

// hasURLSyntax reports a source whose label must hide URL secrets.
func hasURLSyntax(src string) bool { return isURL(src) || isRedisSource(src) }

// IsInlineDirect reports a source that is a direct entry itself ("direct",
// "direct://ADDR") rather than a list to read.
func IsInlineDirect(src string) bool {
	lower := strings.ToLower(src)
	return lower == "direct" || strings.HasPrefix(lower, "direct://")
}

// SourceLabel names a source (or any URL) in logs and errors without the
// secrets a URL may carry (userinfo, query string).
func SourceLabel(src string) string {
	if !hasURLSyntax(src) {
		return src
	}
	u, err := url.Parse(src)
	if err != nil {
		return "invalid URL"
	}
	label := u.Scheme + "://" + u.Host + u.EscapedPath()
	if u.RawQuery != "" {
		label += "?…"
	}
	return label
}

// loadSource reads one source. lineErrs are the skipped lines; err is set
// when the source as a whole could not be read, its entries then incomplete.
func (u *Updater) loadSource(ctx context.Context, src string) (ups []*Upstream, lineErrs []error, err error) {
	if IsInlineDirect(src) {
		e, err := ParseEntry(src)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", src, err)
		}
		return []*Upstream{NewUpstream(e)}, nil, nil
	}
	label := SourceLabel(src)
	var r io.ReadCloser
	if rs := u.redis[src]; rs != nil {
		r, err = rs.open(ctx, label, u.cfg.maxListSize())
	} else if isURL(src) {
		r, err = u.fetch(ctx, src, label)
	} else {
		r, err = os.Open(src)
	}
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	lr := &limitedReader{r: r, left: u.cfg.maxListSize()}
	ups, errs := ParseList(label, lr)
	for _, e := range errs {
		var le *LineError
		if errors.As(e, &le) {
			lineErrs = append(lineErrs, e)
		} else {
			err = e
		}
	}
	return ups, lineErrs, err
}

func (u *Updater) fetch(ctx context.Context, src, label string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	resp, err := u.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the URL with its secrets
		}
		return nil, fmt.Errorf("fetch %s: %w", label, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_ = resp.Body.Close()
		return nil, fmt.Errorf("%w: %s: %s", ErrFetch, label, resp.Status)
	}
	return resp.Body, nil
}

// limitedReader fails with ErrListTooLarge past its limit instead of
// silently truncating, so a cut-off list never replaces a whole one.
type limitedReader struct {
	r    io.Reader
	left int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			return 0, ErrListTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}
