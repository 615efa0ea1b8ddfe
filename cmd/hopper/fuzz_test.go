package main

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// configSeeds are configs the tests and docs use, good and bad.
var configSeeds = []string{
	"",
	"listen: 127.0.0.1:9999\nupstreams: [a.txt, b.txt]\nidle-timeout: 90s\nlog-format: json\nmax-conns: 10\n",
	"pools:\n  residential: { upstreams: [lists/resi.txt], policy: round-robin }\n  datacenter:  { upstreams: [https://example.net/list.txt], policy: least-latency }\n" +
		"rules:\n  - { host: \"*.shop.example\", pool: residential, min-interval: 2s, reserve: true }\n  - { host: \"*\", pool: datacenter }\n",
	"auth: [alice:secret, bob:hunter2]\nacl:\n  alice: { hosts: [\"*.example.com\"], cidrs: [203.0.113.0/24], ports: [\"443\", \"8000-8999\"] }\n",
	"users: /etc/hopper/users\nallow-private: true\nmax-conns-per-client: 16\nheader-timeout: 5s\n",
	"listen: 127.0.0.1:1\nlisten-addr: x\n",
	"idle-timeout: soon\n",
	"- a\n- b\n",
	"listen: [unclosed\n",
	"a: b: c\n",
	"acl: {alice: {hosts: 3}}\n",
	"x: &a [*a]\n",
	"rules: [{host: \"/[/\", pool: p}]\n",
	"\tlisten: x\n",
	"retries: 99999999999999999999\n",
}

var namesLine = regexp.MustCompile(`hopper\.yaml:\d+|line \d+`)

// FuzzLoadConfig feeds arbitrary bytes to the YAML config loader. It must
// never panic; every error is a one-line usage error naming the file, and
// one naming the line at fault whenever the text is not valid YAML. A
// config that loads is then validated without panicking, again with a
// one-line error if any.
func FuzzLoadConfig(f *testing.F) {
	for _, s := range configSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := defaultServeConfig()
		err := decodeYAML("hopper.yaml", data, &cfg)
		if err == nil {
			if verr := cfg.validate(); verr != nil && strings.Contains(verr.Error(), "\n") {
				t.Fatalf("validate error spans lines: %q", verr)
			}
			return
		}
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Fatalf("not a usage error: %T %v", err, err)
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") {
			t.Fatalf("error spans lines: %q", msg)
		}
		if !strings.HasPrefix(msg, "hopper.yaml") {
			t.Fatalf("error does not name the file: %q", msg)
		}
		if yaml.Unmarshal(data, new(yaml.Node)) != nil && !namesLine.MatchString(msg) {
			t.Fatalf("invalid YAML, but the error names no line: %q", msg)
		}
	})
}

// Syntax errors the YAML library reports without a line still name one.
func TestYAMLSyntaxErrorsNameALine(t *testing.T) {
	cases := map[string]string{
		"a: b: c\n":                        "hopper.yaml:1: ",
		"listen: x\nlog-level: \x01info\n": "hopper.yaml:2: ",
		"listen: x\n\n# \xff\n":            "hopper.yaml:3: ",
		"listen: [x,\n  y\nrules: {\n":     "hopper.yaml: line ",
	}
	for in, want := range cases {
		cfg := defaultServeConfig()
		err := decodeYAML("hopper.yaml", []byte(in), &cfg)
		if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: got %v, want a one-line error starting %q", in, err, want)
		}
	}
}
