package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hopper-proxy/hopper/auth"
	"github.com/hopper-proxy/hopper/mitm"
	"github.com/hopper-proxy/hopper/rotate"
)

// serveConfig is everything `hopper serve` can be told. Every field has a
// flag and a YAML key of the same name; flags override the file.
type serveConfig struct {
	Listen         string        `yaml:"listen"`
	Admin          string        `yaml:"admin"`
	Upstreams      []string      `yaml:"upstreams"`
	Refresh        time.Duration `yaml:"refresh"`
	Retries        int           `yaml:"retries"`
	ConnectTimeout time.Duration `yaml:"connect-timeout"`
	Rotate         string        `yaml:"rotate"`
	LogLevel       string        `yaml:"log-level"`
	LogFormat      string        `yaml:"log-format"`
	IdleTimeout    time.Duration `yaml:"idle-timeout"`
	HeaderTimeout  time.Duration `yaml:"header-timeout"`
	DrainTimeout   time.Duration `yaml:"drain-timeout"`
	MaxConns       int           `yaml:"max-conns"`
	// MaxConnsPerClient bounds one client address's connections.
	MaxConnsPerClient int `yaml:"max-conns-per-client"`
	// ResponseHeaderTimeout bounds the wait for a forward request's
	// response head.
	ResponseHeaderTimeout time.Duration `yaml:"response-header-timeout"`
	// TLSCert and TLSKey make the listener an HTTPS proxy too.
	TLSCert string `yaml:"tls-cert"`
	TLSKey  string `yaml:"tls-key"`

	// Health, probing and sessions (rotate).
	Policy                  string        `yaml:"policy"`
	FailuresUntilQuarantine int           `yaml:"failures-until-quarantine"`
	Quarantine              time.Duration `yaml:"quarantine"`
	ProbeURL                string        `yaml:"probe-url"`
	ProbeInterval           time.Duration `yaml:"probe-interval"`
	Judge                   string        `yaml:"judge"`
	SessionTTL              time.Duration `yaml:"session-ttl"`
	MaxQueueWait            time.Duration `yaml:"max-queue-wait"`
	// ReservationTTL bounds how long the reservations (reserve: true) of
	// an instance that died keep their exits.
	ReservationTTL time.Duration `yaml:"reservation-ttl"`
	// Shared state (rotate.Store): memory, or a Redis server shared by
	// several instances.
	State       string `yaml:"state"`
	StatePrefix string `yaml:"state-prefix"`
	// Pools and Rules route targets to named pools (YAML only).
	Pools map[string]rotate.PoolSpec `yaml:"pools"`
	Rules []rotate.Rule              `yaml:"rules"`

	// Access control (auth).
	Auth         []string                   `yaml:"auth"`
	Users        string                     `yaml:"users"`
	AllowOpen    bool                       `yaml:"allow-open"`
	AllowPrivate bool                       `yaml:"allow-private"`
	ACL          map[string]auth.TargetRule `yaml:"acl"`

	// TLS interception (mitm).
	MITM                bool               `yaml:"mitm"`
	CADir               string             `yaml:"ca-dir"`
	Profile             string             `yaml:"profile"`
	ProfileRules        []mitm.ProfileRule `yaml:"profile-rules"` // YAML only
	MITMHosts           []string           `yaml:"mitm-hosts"`
	MITMSkip            []string           `yaml:"mitm-skip"`
	InsecureOrigin      bool               `yaml:"insecure-origin"`
	RotateOn429         bool               `yaml:"rotate-on-429"`
	RotateAfterRequests int                `yaml:"rotate-after-requests"`
}

// defaultServeConfig is the embedded default: a direct proxy on loopback.
func defaultServeConfig() serveConfig {
	return serveConfig{
		Listen:         "127.0.0.1:8080",
		Refresh:        30 * time.Second,
		Retries:        2,
		ConnectTimeout: 10 * time.Second,
		Rotate:         "per-request",
		LogLevel:       "info",
		LogFormat:      "console",
		IdleTimeout:    5 * time.Minute,
		HeaderTimeout:  10 * time.Second,
		DrainTimeout:   15 * time.Second,
		MaxConns:       8192,

		MaxConnsPerClient: 256,

		ResponseHeaderTimeout: 30 * time.Second,

		Policy:                  "round-robin",
		FailuresUntilQuarantine: 3,
		Quarantine:              5 * time.Minute,
		ProbeInterval:           time.Minute,
		SessionTTL:              10 * time.Minute,
		MaxQueueWait:            10 * time.Second,
		ReservationTTL:          rotate.DefaultReserveTTL,
		State:                   "memory",
		StatePrefix:             rotate.DefaultStatePrefix,
	}
}

var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"console", "json"}
)

// errHelp is returned when the user asked for --help; it is not a failure.
var errHelp = errors.New("help requested")

// parseServe builds the configuration from the optional --config file and
// the flags in args. Every error is one line naming the key at fault.
func parseServe(args []string, out io.Writer) (serveConfig, error) {
	cfg := defaultServeConfig()
	if path, ok := configPath(args); ok {
		if err := loadYAML(path, &cfg); err != nil {
			return cfg, err
		}
	}
	fs := flag.NewFlagSet("hopper serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.String("config", "", "YAML config file; flags override its keys")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address to serve HTTP and SOCKS on")
	fs.StringVar(&cfg.Admin, "admin", cfg.Admin, "address of the admin server: metrics, status page, /healthz, /proxy.pac (off when empty; beyond loopback it needs --auth or --users)")
	fs.Var(&listFlag{list: &cfg.Upstreams}, "upstreams", "upstream list file or http(s) URL (repeatable); none: egress directly")
	fs.DurationVar(&cfg.Refresh, "refresh", cfg.Refresh, "how often upstream lists are reloaded")
	fs.IntVar(&cfg.Retries, "retries", cfg.Retries, "further upstreams to try when one fails")
	fs.DurationVar(&cfg.ConnectTimeout, "connect-timeout", cfg.ConnectTimeout, "limit for reaching a target, all attempts together")
	fs.StringVar(&cfg.Rotate, "rotate", cfg.Rotate, "per-request, per-connection or every-N")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "console or json")
	fs.StringVar(&cfg.TLSCert, "tls-cert", cfg.TLSCert, "certificate (PEM) that makes --listen an HTTPS proxy too (TLS between client and hopper; plain clients still served); reloaded on SIGHUP")
	fs.StringVar(&cfg.TLSKey, "tls-key", cfg.TLSKey, "private key (PEM) of --tls-cert")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", cfg.IdleTimeout, "close tunnels idle for this long")
	fs.DurationVar(&cfg.HeaderTimeout, "header-timeout", cfg.HeaderTimeout, "limit for a client to send its request head or handshake")
	fs.DurationVar(&cfg.ResponseHeaderTimeout, "response-header-timeout", cfg.ResponseHeaderTimeout, "limit for an origin or upstream to start answering a plain-HTTP request once it was sent (then 504; a bodiless GET/HEAD/OPTIONS is tried once more, through another upstream if there is one)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", cfg.DrainTimeout, "on SIGINT/SIGTERM, how long live tunnels may finish")
	fs.IntVar(&cfg.MaxConns, "max-conns", cfg.MaxConns, "concurrent client connections (0: unlimited)")
	fs.IntVar(&cfg.MaxConnsPerClient, "max-conns-per-client", cfg.MaxConnsPerClient, "concurrent connections from one client address, 127.0.0.1 and ::1 exempt (0: unlimited)")
	fs.StringVar(&cfg.Policy, "policy", cfg.Policy, "round-robin, random, least-latency or weighted")
	fs.IntVar(&cfg.FailuresUntilQuarantine, "failures-until-quarantine", cfg.FailuresUntilQuarantine, "consecutive failures of an upstream's own that quarantine it")
	fs.DurationVar(&cfg.Quarantine, "quarantine", cfg.Quarantine, "first quarantine; doubles on repeat offences")
	fs.StringVar(&cfg.ProbeURL, "probe-url", cfg.ProbeURL, "URL fetched through each upstream to probe it (default: TCP connect to the upstream)")
	fs.DurationVar(&cfg.ProbeInterval, "probe-interval", cfg.ProbeInterval, "time between probes of one upstream (0: no probing)")
	fs.StringVar(&cfg.Judge, "judge", cfg.Judge, "judge URL (hopper judge) that probes use to learn exit IPs and anonymity")
	fs.DurationVar(&cfg.SessionTTL, "session-ttl", cfg.SessionTTL, "how long a sticky session keeps its upstream after last use")
	fs.DurationVar(&cfg.MaxQueueWait, "max-queue-wait", cfg.MaxQueueWait, "how long a request may wait for an upstream free under min-interval")
	fs.DurationVar(&cfg.ReservationTTL, "reservation-ttl", cfg.ReservationTTL, "how long a reservation (reserve: true) outlives an instance that died; live tunnels renew theirs every third of it")
	fs.StringVar(&cfg.State, "state", cfg.State, "memory, or redis://[user:pass@]host:port/db (rediss:// for TLS) to share rotation, health, sessions, reservations and MITM identities with other instances")
	fs.StringVar(&cfg.StatePrefix, "state-prefix", cfg.StatePrefix, "namespace of this deployment's keys in the shared state")
	fs.Var(&listFlag{list: &cfg.Auth}, "auth", "user:pass account (repeatable); turns authentication on")
	fs.StringVar(&cfg.Users, "users", cfg.Users, "htpasswd file with bcrypt accounts (htpasswd -B); reloaded on SIGHUP")
	fs.BoolVar(&cfg.AllowOpen, "allow-open", cfg.AllowOpen, "allow listening beyond loopback without authentication")
	fs.BoolVar(&cfg.AllowPrivate, "allow-private", cfg.AllowPrivate, "let clients not on loopback reach private and loopback addresses")
	fs.BoolVar(&cfg.MITM, "mitm", cfg.MITM, "intercept TLS in CONNECT (and SOCKS to port 443) with hopper's CA and browser identities")
	fs.StringVar(&cfg.CADir, "ca-dir", cfg.CADir, "directory of the MITM CA made by 'hopper ca init' (default: hopper under the user config dir)")
	fs.StringVar(&cfg.Profile, "profile", cfg.Profile, "browser identity for intercepted requests: "+strings.Join(mitm.ProfileNames(), ", ")+", mirror (copy the client's own fingerprint), or random per identity (default random)")
	fs.Var(&listFlag{list: &cfg.MITMHosts}, "mitm-hosts", "intercept only hosts matching this glob or /regex/ (repeatable; default every host)")
	fs.Var(&listFlag{list: &cfg.MITMSkip}, "mitm-skip", "never intercept hosts matching this glob or /regex/ (repeatable)")
	fs.BoolVar(&cfg.InsecureOrigin, "insecure-origin", cfg.InsecureOrigin, "do not verify origin certificates when intercepting (testing only)")
	fs.BoolVar(&cfg.RotateOn429, "rotate-on-429", cfg.RotateOn429, "give an (upstream, site) pair a new identity when the site answers 429")
	fs.IntVar(&cfg.RotateAfterRequests, "rotate-after-requests", cfg.RotateAfterRequests, "give a pair a new identity after this many requests (0: never)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printFlags(out, "hopper serve [flags]", fs)
			return cfg, errHelp
		}
		return cfg, usagef("%s (see 'hopper serve --help')", flagError(err))
	}
	if fs.NArg() > 0 {
		return cfg, usagef("unexpected argument %q (see 'hopper serve --help')", fs.Arg(0))
	}
	if err := cfg.validate(); err != nil {
		return cfg, usagef("%w", err)
	}
	return cfg, nil
}

// printFlags lists fs's flags in --name style with their defaults.
func printFlags(out io.Writer, synopsis string, fs *flag.FlagSet) {
	fmt.Fprintf(out, "Usage: %s\n\nFlags (each is also a YAML key of the same name):\n", synopsis)
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(out, "  --%s %s\n    \t%s", f.Name, name, usage)
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "[]" {
			fmt.Fprintf(out, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(out)
	})
}

// flagError rewrites the flag package's messages into hopper's --name style.
func flagError(err error) string {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return fmt.Sprintf("unknown flag --%s", strings.TrimLeft(name, "-"))
	}
	if strings.HasPrefix(msg, "invalid value") || strings.HasPrefix(msg, "flag needs") {
		return strings.Replace(msg, " -", " --", 1)
	}
	return msg
}

// configPath finds --config in args before the flags are parsed, so the file
// can supply defaults that the other flags then override.
func configPath(args []string) (string, bool) {
	for i, a := range args {
		if a == "--" {
			break
		}
		name := strings.TrimLeft(a, "-")
		if len(name) == len(a) {
			continue
		}
		if v, ok := strings.CutPrefix(name, "config="); ok {
			return v, true
		}
		if name == "config" && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// loadYAML reads path into cfg. Unknown keys and bad values are errors that
// name the file, line and key.
func loadYAML(path string, cfg *serveConfig) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return usagef("--config: %w", err)
	}
	return decodeYAML(path, data, cfg)
}

// decodeYAML is loadYAML for the contents data of the file named path.
func decodeYAML(path string, data []byte, cfg *serveConfig) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return yamlSyntaxError(path, data, err)
	}
	if len(doc.Content) == 0 {
		return nil // empty file
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return usagef("%s:%d: expected a mapping of keys to values", path, root.Line)
	}
	known := yamlKeys()
	for i := 0; i+1 < len(root.Content); i += 2 {
		k := root.Content[i]
		if _, ok := known[k.Value]; !ok {
			return usagef("%s:%d: unknown key %q (keys: %s)", path, k.Line, k.Value, strings.Join(sortedKeys(known), ", "))
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) && len(te.Errors) > 0 {
			return usagef("%s: %s", path, te.Errors[0])
		}
		return usagef("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return nil
}

func yamlKeys() map[string]struct{} {
	keys := make(map[string]struct{})
	for _, f := range reflectYAMLTags(serveConfig{}) {
		keys[f] = struct{}{}
	}
	keys["config"] = struct{}{}
	return keys
}

func sortedKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// validate fails closed: an unknown value is an error naming the key and the
// values it allows.
func (c *serveConfig) validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("--listen: %q is not host:port", c.Listen)
	}
	if c.Admin != "" {
		if _, _, err := net.SplitHostPort(c.Admin); err != nil {
			return fmt.Errorf("--admin: %q is not host:port", c.Admin)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("--tls-cert and --tls-key go together")
	}
	if !contains(logLevels, c.LogLevel) {
		return fmt.Errorf("--log-level: invalid value %q (allowed: %s)", c.LogLevel, strings.Join(logLevels, ", "))
	}
	if !contains(logFormats, c.LogFormat) {
		return fmt.Errorf("--log-format: invalid value %q (allowed: %s)", c.LogFormat, strings.Join(logFormats, ", "))
	}
	if err := validRotate(c.Rotate); err != nil {
		return err
	}
	if _, err := rotate.ParsePolicy(c.Policy); err != nil {
		return fmt.Errorf("--policy: invalid value %q (allowed: round-robin, random, least-latency, weighted)", c.Policy)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"quarantine", c.Quarantine}, {"session-ttl", c.SessionTTL}, {"max-queue-wait", c.MaxQueueWait}, {"probe-interval", c.ProbeInterval}} {
		if d.v < 0 {
			return fmt.Errorf("--%s: must not be negative, got %s", d.name, d.v)
		}
	}
	if c.FailuresUntilQuarantine < 0 {
		return fmt.Errorf("--failures-until-quarantine: must be 0 (never) or more, got %d", c.FailuresUntilQuarantine)
	}
	for _, u := range []struct{ name, v string }{{"probe-url", c.ProbeURL}, {"judge", c.Judge}} {
		if u.v == "" {
			continue
		}
		if pu, err := url.Parse(u.v); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return fmt.Errorf("--%s: %q is not an http(s) URL", u.name, u.v)
		}
	}
	for _, a := range c.Auth {
		if user, _, ok := strings.Cut(a, ":"); !ok || user == "" {
			return fmt.Errorf("--auth: want user:pass, got %q without a password", user)
		}
	}
	if err := c.validateState(); err != nil {
		return err
	}
	if len(c.Pools) > 0 && len(c.Upstreams) > 0 {
		return fmt.Errorf("upstreams: give either --upstreams or a pools: block, not both")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"refresh", c.Refresh}, {"connect-timeout", c.ConnectTimeout}, {"idle-timeout", c.IdleTimeout},
		{"header-timeout", c.HeaderTimeout}, {"response-header-timeout", c.ResponseHeaderTimeout},
		{"reservation-ttl", c.ReservationTTL},
	} {
		if d.v <= 0 {
			return fmt.Errorf("--%s: must be a positive duration such as 30s, got %s", d.name, d.v)
		}
	}
	if c.DrainTimeout < 0 {
		return fmt.Errorf("--drain-timeout: must not be negative, got %s", c.DrainTimeout)
	}
	if c.MaxConns < 0 {
		return fmt.Errorf("--max-conns: must be 0 (unlimited) or more, got %d", c.MaxConns)
	}
	if c.MaxConnsPerClient < 0 {
		return fmt.Errorf("--max-conns-per-client: must be 0 (unlimited) or more, got %d", c.MaxConnsPerClient)
	}
	if err := c.validateMITM(); err != nil {
		return err
	}
	if c.Retries < 0 {
		return fmt.Errorf("--retries: must be 0 or more, got %d", c.Retries)
	}
	return nil
}

func validRotate(v string) error {
	if v == "per-request" || v == "per-connection" {
		return nil
	}
	if n, ok := strings.CutPrefix(v, "every-"); ok {
		if k, err := strconv.Atoi(n); err == nil && k > 0 {
			return nil
		}
	}
	return fmt.Errorf("--rotate: invalid value %q (allowed: per-request, per-connection, every-N with N > 0)", v)
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}

// listFlag is a repeatable string flag. Its first use on the command line
// replaces whatever the config file gave; later uses append.
type listFlag struct {
	list *[]string
	set  bool
}

func (f *listFlag) String() string {
	if f.list == nil {
		return ""
	}
	return strings.Join(*f.list, ",")
}

func (f *listFlag) Set(v string) error {
	if !f.set {
		*f.list = nil
		f.set = true
	}
	*f.list = append(*f.list, v)
	return nil
}
