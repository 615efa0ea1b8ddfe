package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestServeResponseHeaderTimeout runs the binary with an upstream proxy that
// takes plain-HTTP requests and never answers: --response-header-timeout
// ends the wait, the stall counts against that upstream, a GET is sent
// again through the other upstream, and a POST gets 504.
func TestServeResponseHeaderTimeout(t *testing.T) {
	origin := sourceOrigin(t)
	const wait = "500ms"
	stallingUpstream := func(t *testing.T) (string, *atomic.Int64) {
		var requests atomic.Int64
		p := startUpstream(t, "127.0.0.1", func(c net.Conn, br *bufio.Reader, req *http.Request) {
			requests.Add(1)
			_, _ = io.Copy(io.Discard, br) // until hopper gives up on it
		})
		return "http://" + p.addr(), &requests
	}
	writeList := func(t *testing.T, entries ...string) string {
		list := filepath.Join(t.TempDir(), "list.txt")
		require.NoError(t, os.WriteFile(list, []byte(strings.Join(entries, "\n")+"\n"), 0o600))
		return list
	}

	t.Run("GET is sent again elsewhere", func(t *testing.T) {
		stall, stalled := stallingUpstream(t)
		good := "http://" + startUpstream(t, "127.0.0.1", tunnelTo).addr()
		// One failure quarantines, so the stall shows in the log.
		h := startHopper(t, "--upstreams", writeList(t, stall, good), "--refresh", "1h", "--probe-interval", "0",
			"--failures-until-quarantine", "1", "--response-header-timeout", wait)
		// Round robin: one of two GETs goes to the stalling upstream first.
		for range 2 {
			assert.Equal(t, "127.0.0.1", curl(t, "-x", "http://"+h.Addr, "http://"+origin+"/"))
		}
		assert.Equal(t, int64(1), stalled.Load())

		require.Eventually(t, func() bool { return len(h.records("tunnel")) >= 2 }, 5*time.Second, 20*time.Millisecond, h.log())
		retried := 0
		for _, rec := range h.records("tunnel") {
			assert.Equal(t, "ok", rec["result"], "%v", rec)
			if rec["attempts"] == 2.0 {
				retried++
				assert.Equal(t, good, rec["upstream"])
			}
		}
		assert.Equal(t, 1, retried, h.log())
		q := h.records("upstream quarantined")
		require.Len(t, q, 1, h.log())
		assert.Equal(t, stall, q[0]["upstream"])
		assert.Contains(t, q[0]["error"], "no response head within "+wait)
	})

	t.Run("POST gets 504", func(t *testing.T) {
		stall, stalled := stallingUpstream(t)
		h := startHopper(t, "--upstreams", writeList(t, stall), "--refresh", "1h", "--probe-interval", "0",
			"--response-header-timeout", wait)
		out := curl(t, "-i", "-x", "http://"+h.Addr, "-d", "hello", "http://"+origin+"/")
		assert.Contains(t, out, "HTTP/1.1 504 Gateway Timeout")
		assert.Contains(t, out, "Hopper-Error: timeout")
		assert.True(t, strings.HasSuffix(out, fmt.Sprintf("\r\n\r\nhopper: no response from %s within %s\n", origin, wait)), out)
		assert.Equal(t, int64(1), stalled.Load(), "not sent again")

		require.Eventually(t, func() bool { return len(h.records("tunnel")) >= 1 }, 5*time.Second, 20*time.Millisecond, h.log())
		rec := h.records("tunnel")[0]
		assert.Equal(t, "timeout", rec["result"])
		assert.Equal(t, 504.0, rec["status"])
		assert.Equal(t, stall, rec["upstream"])
		assert.Contains(t, rec["error"], "(response header timeout)")
	})
}
