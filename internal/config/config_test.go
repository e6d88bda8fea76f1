package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the .want files of testdata/invalid")

// TestInvalidFixtures loads every testdata/invalid/*.json, one fixture per
// kind of error, and compares the whole error message with its .want file.
func TestInvalidFixtures(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := Parse(data)
			if err == nil {
				t.Fatalf("accepted: %+v", cfg)
			}
			var cerr *Error
			if !errors.As(err, &cerr) || len(cerr.Problems) == 0 {
				t.Fatalf("error %T %v is not a *Error with problems", err, err)
			}
			wantFile := strings.TrimSuffix(file, ".json") + ".want"
			if *update {
				if err := os.WriteFile(wantFile, []byte(err.Error()+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, rerr := os.ReadFile(wantFile)
			if rerr != nil {
				t.Fatalf("%v (run go test ./internal/config -update and review the file)", rerr)
			}
			if got := err.Error(); got != strings.TrimSuffix(string(want), "\n") {
				t.Errorf("error\n got: %s\nwant: %s", got, want)
			}
		})
	}
}

// TestAllProblemsReported pins that validation does not stop at the first
// problem: every one is named with its path.
func TestAllProblemsReported(t *testing.T) {
	data, err := os.ReadFile("testdata/invalid/many-problems.json")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse(data)
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("got %v", err)
	}
	paths := map[string]bool{}
	for _, p := range cerr.Problems {
		paths[p.Path] = true
	}
	for _, want := range []string{"rules[0].name", "rules[0].key[0]", "rules[0].capacity",
		"rules[0].refill", "rules[0].interval", "rules[1].nme", "rules[1].name", "status", "headers"} {
		if !paths[want] {
			t.Errorf("no problem reported at %s; got %v", want, cerr.Problems)
		}
	}
}

func TestParseFull(t *testing.T) {
	data, err := os.ReadFile("testdata/valid/full.json")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Rules: []Rule{{
			Name: "per-client",
			Match: Match{
				PathPrefix: "/api/",
				Methods:    []string{"GET", "POST"},
				Hosts:      []string{"api.example.com", "*.example.org"},
			},
			Key:      []KeyPart{{Kind: KeyRemoteAddress}, {Kind: KeyHeader, Header: "x-api-key"}},
			Capacity: 100, Refill: 10, Interval: time.Second, Cost: 2, Shadow: true,
		}},
		TrustedHops: 2,
		Status:      503,
		Body:        `{"error":"slow down"}`,
		ContentType: "application/json",
		Headers:     HeadersBoth,
		FailureMode: FailDeny,
		Slots:       1024,
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("got  %+v\nwant %+v", cfg, want)
	}
}

func TestDefaults(t *testing.T) {
	data, err := os.ReadFile("testdata/valid/minimal.json")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Rules[0]
	if cfg.Status != 429 || cfg.Body != DefaultBody || cfg.ContentType != "application/problem+json" ||
		cfg.Headers != HeadersDraft || cfg.FailureMode != FailAllow || cfg.Slots != DefaultSlots ||
		cfg.TrustedHops != 0 || r.Cost != 1 || r.Shadow || r.Interval != time.Minute {
		t.Fatalf("defaults not filled: %+v", cfg)
	}
	if got := r.Limit(); got.Capacity != 100 || got.Refill != 100 || got.Interval != int64(time.Minute) {
		t.Fatalf("Limit() = %+v", got)
	}
	if !strings.Contains(DefaultBody, "quota-exceeded") {
		t.Fatal("default body is not the quota-exceeded problem document")
	}
}

// TestEmptyBodyIsDefault: "body": "" (as in the documented example) means
// the default problem document.
func TestEmptyBodyIsDefault(t *testing.T) {
	cfg, err := Parse([]byte(`{"rules":[{"name":"a","key":["path"],"capacity":1,"refill":1,"interval":"1s"}],"body":""}`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Body != DefaultBody || cfg.ContentType != DefaultContentType {
		t.Fatalf("got %q %q", cfg.Body, cfg.ContentType)
	}
}

// TestCustomBodyContentType: a custom body without content_type is text.
func TestCustomBodyContentType(t *testing.T) {
	cfg, err := Parse([]byte(`{"rules":[{"name":"a","key":["path"],"capacity":1,"refill":1,"interval":"1s"}],"body":"slow down"}`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Body != "slow down" || cfg.ContentType != TextContentType {
		t.Fatalf("got %q %q", cfg.Body, cfg.ContentType)
	}
}

func TestKeyPartString(t *testing.T) {
	for _, s := range []string{"remote_address", "header:x-api-key", "path", "method", "host"} {
		kp, err := parseKeyPart(s)
		if err != "" || kp.String() != s {
			t.Errorf("%s: got %v %q", s, kp, err)
		}
	}
}

// FuzzParse: any input either parses into a config whose invariants hold, or
// gives a *Error with at least one problem. Never a panic.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata/valid", "testdata/invalid"} {
		files, _ := filepath.Glob(dir + "/*.json")
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err == nil {
				f.Add(data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			var cerr *Error
			if !errors.As(err, &cerr) || len(cerr.Problems) == 0 {
				t.Fatalf("error without problems: %v", err)
			}
			return
		}
		if len(cfg.Rules) == 0 {
			t.Fatal("accepted a config without rules")
		}
		global := false
		for _, r := range cfg.Rules {
			if g := r.Global; g != nil {
				global = true
				if g.RequestsPerUnit < 1 || g.Unit.Duration() == 0 || r.Cost < 1 || r.Cost > g.RequestsPerUnit ||
					len(r.Key) == 0 || r.Capacity != 0 || r.Refill != 0 || r.Interval != 0 {
					t.Fatalf("accepted an invalid global rule: %+v", r)
				}
				continue
			}
			if !r.Limit().Valid() || r.Cost < 1 || r.Cost > r.Capacity || len(r.Key) == 0 ||
				r.Interval < MinInterval {
				t.Fatalf("accepted an invalid rule: %+v", r)
			}
		}
		if s := cfg.RateLimitService; (s != nil) != global || s != nil && (s.Cluster == "" ||
			s.Authority == "" || s.Domain == "" || s.Timeout < MinRLSTimeout || s.CacheSlots < MinSlots) {
			t.Fatalf("rate_limit_service %+v with global rules %v", s, global)
		}
	})
}

// TestREADMEExample keeps the documented example configuration valid.
func TestREADMEExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Configuration\n")
	if !ok {
		t.Fatal("README has no Configuration section")
	}
	_, block, ok := strings.Cut(section, "```json\n")
	if !ok {
		t.Fatal("the Configuration section has no json block")
	}
	block, _, _ = strings.Cut(block, "```")
	cfg, err := Parse([]byte(block))
	if err != nil {
		t.Fatalf("the README's example is rejected: %v", err)
	}
	if len(cfg.Rules) != 1 || cfg.Rules[0].Name != "per-client" || len(cfg.Rules[0].Key) != 2 {
		t.Fatalf("parsed %+v", cfg)
	}
}
