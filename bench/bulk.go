package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// safety bounds every blocking step past a scenario's own duration, so a
// stalled proxy fails the run instead of hanging it.
const safety = 15 * time.Second

// bulkResult is one bulk run: bytes moved by all streams and the time from
// the first dial to the last byte's arrival. The end of a stream (the EOF
// passed on, the connections closed) is not part of it: a proxy that does not
// pass half-closes on ends its tunnels only at a timeout of its own, which
// says nothing about its throughput.
type bulkResult struct {
	bytes   int64
	elapsed time.Duration
}

func (b bulkResult) gbits() float64 {
	return float64(b.bytes) * 8 / b.elapsed.Seconds() / 1e9
}

// bulk runs streams parallel tunnels to the bulk origin, each moving data in
// one direction for d, and checks every byte count against the origin's.
func bulk(ctx context.Context, o *origins, r route, mode byte, streams int, d time.Duration) (bulkResult, error) {
	start := time.Now()
	deadline := start.Add(d)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int64
		last  time.Time
		errs  []error
	)
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, end, err := bulkStream(ctx, o, r, mode, deadline)
			mu.Lock()
			defer mu.Unlock()
			total += n
			if end.After(last) {
				last = end
			}
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return bulkResult{}, err
	}
	return bulkResult{bytes: total, elapsed: last.Sub(start)}, nil
}

// bulkStream moves data over one tunnel until deadline and returns the byte
// count both ends agree on and when the last byte arrived.
func bulkStream(ctx context.Context, o *origins, r route, mode byte, deadline time.Time) (int64, time.Time, error) {
	id, counted := o.tally.expect()
	c, err := r.dial(ctx, o.bulkAddr())
	if err != nil {
		o.tally.forget(id)
		return 0, time.Time{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(deadline.Add(safety))
	defer interruptOnDone(ctx, c)()
	var h [headerLen]byte
	h[0] = mode
	binary.BigEndian.PutUint64(h[1:], id)
	if _, err := c.Write(h[:]); err != nil {
		o.tally.forget(id)
		return 0, time.Time{}, fmt.Errorf("bulk header: %w", err)
	}
	var (
		mine int64
		end  time.Time
	)
	if mode == modeUpload {
		mine, err = upload(c, deadline)
	} else {
		mine, end, err = download(c, deadline)
	}
	if err != nil {
		o.tally.forget(id)
		return mine, end, err
	}
	theirs, err := o.tally.awaitCount(ctx, id, counted, safety)
	if err != nil {
		return mine, end, err
	}
	if mode == modeUpload {
		end = theirs.last
	}
	if theirs.n != mine {
		return mine, end, fmt.Errorf("%w: %s over %v: client %d, origin %d", ErrBytesMismatch, modeName(mode), r.front, mine, theirs.n)
	}
	return mine, end, nil
}

func modeName(mode byte) string {
	if mode == modeUpload {
		return "upload"
	}
	return "download"
}

// upload writes until deadline (at least one chunk, however late the
// tunnel opened), then half-closes so the origin sees EOF after the last
// byte.
func upload(c net.Conn, deadline time.Time) (int64, error) {
	buf := make([]byte, bulkChunk)
	var n int64
	for first := true; first || time.Now().Before(deadline); first = false {
		w, err := c.Write(buf)
		n += int64(w)
		if err != nil {
			return n, fmt.Errorf("upload write: %w", err)
		}
	}
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		return n, fmt.Errorf("upload: %T cannot half-close", c)
	}
	if err := cw.CloseWrite(); err != nil {
		return n, fmt.Errorf("upload half-close: %w", err)
	}
	return n, nil
}

// download reads until deadline, then asks the origin to stop with one byte
// and reads the rest up to the origin's close. It returns the count and when
// the last byte came.
func download(c net.Conn, deadline time.Time) (int64, time.Time, error) {
	buf := make([]byte, bulkChunk)
	var (
		n    int64
		last time.Time
	)
	stopped := false
	for {
		m, err := c.Read(buf)
		now := time.Now()
		if m > 0 {
			n += int64(m)
			last = now
		}
		if err == io.EOF {
			if !stopped {
				return n, last, fmt.Errorf("download: %w before the stop", io.ErrUnexpectedEOF)
			}
			return n, last, nil
		}
		if err != nil {
			return n, last, fmt.Errorf("download read: %w", err)
		}
		if !stopped && !now.Before(deadline) {
			if _, err := c.Write([]byte{0}); err != nil {
				return n, last, fmt.Errorf("download stop: %w", err)
			}
			stopped = true
		}
	}
}
