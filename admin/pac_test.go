package admin

import (
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pacRunner evaluates a PAC file with node, defining the helper functions
// browsers give PAC scripts, and prints FindProxyForURL for each URL.
const pacRunner = `
const fs = require("fs"), vm = require("vm");
const glob = (p) => new RegExp("^" + p.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") + "$");
const sandbox = {
  shExpMatch: (s, p) => glob(p).test(s),
  isPlainHostName: (h) => h.indexOf(".") < 0,
  dnsDomainIs: (h, d) => h.endsWith(d),
};
vm.createContext(sandbox);
vm.runInContext(fs.readFileSync(process.argv[2], "utf8"), sandbox);
for (const u of process.argv.slice(3)) {
  const host = new URL(u).hostname;
  console.log(sandbox.FindProxyForURL(u, host));
}
`

// evalPAC runs pac for urls in node and returns its answers.
func evalPAC(t *testing.T, pac string, urls ...string) []string {
	t.Helper()
	node, err := exec.LookPath("node")
	require.NoError(t, err, "node is a test dependency (.ci/deps installs nodejs)")
	dir := t.TempDir()
	runner, file := filepath.Join(dir, "run.js"), filepath.Join(dir, "proxy.pac")
	require.NoError(t, os.WriteFile(runner, []byte(pacRunner), 0o600))
	require.NoError(t, os.WriteFile(file, []byte(pac), 0o600))
	out, err := exec.Command(node, append([]string{runner, file}, urls...)...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// TestPACSendsURLsThroughHopper fetches /proxy.pac, evaluates it in node for
// a few URLs, and then uses the proxy it names to reach the origin.
func TestPACSendsURLsThroughHopper(t *testing.T) {
	w := startWorld(t, worldOpts{})
	resp, err := w.client.Get(w.admin + "/proxy.pac")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, "application/x-ns-proxy-autoconfig", resp.Header.Get("Content-Type"))
	code, pac := w.get("/proxy.pac")
	require.Equal(t, http.StatusOK, code)

	want := "PROXY " + w.proxy + "; SOCKS5 " + w.proxy
	got := evalPAC(t, pac,
		"http://example.com/index.html",
		"https://www.example.org:8443/a?b=c",
		"http://localhost:3000/",
		"http://127.0.0.1:9090/metrics",
		"http://[::1]:80/",
	)
	assert.Equal(t, []string{want, want, "DIRECT", "DIRECT", "DIRECT"}, got)

	// The proxy the PAC names works: fetch the origin through it.
	first := strings.TrimPrefix(strings.SplitN(got[0], ";", 2)[0], "PROXY ")
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: first})}
	defer tr.CloseIdleConnections()
	code, n := fetch(t, &http.Client{Transport: tr, Timeout: testTimeout}, "http://"+w.origin+"/bytes/42")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, 42, n)
}

func TestPACProxyAddress(t *testing.T) {
	cases := []struct {
		listen, host, want string
	}{
		{"127.0.0.1:8080", "127.0.0.1:9090", "127.0.0.1:8080"},
		{"0.0.0.0:8080", "proxy.example:9090", "proxy.example:8080"},
		{"[::]:8080", "[2001:db8::1]:9090", "[2001:db8::1]:8080"},
		{":8080", "10.0.0.7", "10.0.0.7:8080"},
		{":8080", `evil";alert(1);"`, "127.0.0.1:8080"},
		{"192.0.2.1:3128", "whatever", "192.0.2.1:3128"},
	}
	for _, c := range cases {
		r := &http.Request{Host: c.host}
		got, err := pacProxy(c.listen, r)
		require.NoError(t, err, c.listen)
		assert.Equal(t, c.want, got, "%s via %s", c.listen, c.host)
	}
	_, err := pacProxy("no-port", &http.Request{})
	assert.Error(t, err)

	s, err := New(Config{Metrics: NewMetrics(MetricsConfig{})})
	require.NoError(t, err)
	assert.Equal(t, http.StatusNotFound, serve(s, "/proxy.pac").code, "no proxy address: no PAC")
}

// FuzzPAC: whatever Host a client sends, the PAC names the proxy only as a
// single quoted JavaScript string (no injection), with the listen port.
func FuzzPAC(f *testing.F) {
	for _, s := range []string{"127.0.0.1:9090", "proxy.example", "[::1]:1", `a"b`, "x\ny", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		proxy, err := pacProxy("0.0.0.0:8080", &http.Request{Host: host})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(proxy, ":8080") {
			t.Fatalf("proxy %q lost the port", proxy)
		}
		pac := PAC(proxy)
		i := strings.Index(pac, "return \"PROXY ")
		if i < 0 {
			t.Fatalf("no PROXY return in %q", pac)
		}
		line := pac[i+len("return "):]
		line = line[:strings.IndexByte(line, '\n')]
		q, err := strconv.Unquote(strings.TrimSuffix(line, ";"))
		if err != nil {
			t.Fatalf("return value %s is not one quoted string: %v", line, err)
		}
		if q != "PROXY "+proxy+"; SOCKS5 "+proxy {
			t.Fatalf("PAC names %q, want %q", q, proxy)
		}
	})
}
