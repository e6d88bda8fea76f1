package config

import (
	"os"
	"reflect"
	"testing"
	"time"
)

func TestParseGlobal(t *testing.T) {
	data, err := os.ReadFile("testdata/valid/global.json")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Rules) != 2 || cfg.Rules[0].Global != nil {
		t.Fatalf("rules: %+v", cfg.Rules)
	}
	want := Rule{
		Name:   "fleet-per-key",
		Match:  Match{PathPrefix: "/api/"},
		Key:    []KeyPart{{Kind: KeyHeader, Header: "x-api-key"}},
		Cost:   2,
		Global: &Global{RequestsPerUnit: 100, Unit: UnitMinute},
	}
	if !reflect.DeepEqual(cfg.Rules[1], want) {
		t.Errorf("global rule\n got %+v %+v\nwant %+v %+v", cfg.Rules[1], cfg.Rules[1].Global, want, want.Global)
	}
	wantRLS := &RateLimitService{
		Cluster:     "outbound|8081||ratelimit.default.svc.cluster.local",
		Authority:   "ratelimit.default.svc.cluster.local",
		Domain:      "tokengate",
		Timeout:     250 * time.Millisecond,
		FailureMode: FailDeny,
		CacheSlots:  1024,
	}
	if !reflect.DeepEqual(cfg.RateLimitService, wantRLS) {
		t.Errorf("rate_limit_service\n got %+v\nwant %+v", cfg.RateLimitService, wantRLS)
	}
}

func TestGlobalDefaults(t *testing.T) {
	cfg, err := Parse([]byte(`{"rules":[{"name":"g","key":["path","method"],"global":{"requests_per_unit":5,"unit":"second"}}],
		"rate_limit_service":{"cluster":"ratelimit","domain":"d","authority":""}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := &RateLimitService{Cluster: "ratelimit", Authority: "ratelimit", Domain: "d",
		Timeout: DefaultRLSTimeout, FailureMode: FailAllow, CacheSlots: DefaultSlots}
	if !reflect.DeepEqual(cfg.RateLimitService, want) {
		t.Errorf("got %+v\nwant %+v", cfg.RateLimitService, want)
	}
	if r := cfg.Rules[0]; r.Cost != 1 || r.Shadow || r.Global.Unit != UnitSecond {
		t.Errorf("rule defaults: %+v %+v", r, r.Global)
	}
}

func TestLocalConfigHasNoRLS(t *testing.T) {
	cfg, err := Parse([]byte(`{"rules":[{"name":"a","key":["path"],"capacity":1,"refill":1,"interval":"1s"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RateLimitService != nil || cfg.Rules[0].Global != nil {
		t.Fatalf("got %+v", cfg)
	}
}

func TestDescriptorKeys(t *testing.T) {
	for _, tc := range []struct {
		key  []KeyPart
		want []string
	}{
		{[]KeyPart{{Kind: KeyHeader, Header: "x-api-key"}}, []string{"rule", "header:x-api-key"}},
		{[]KeyPart{{Kind: KeyRemoteAddress}, {Kind: KeyPath}, {Kind: KeyMethod}, {Kind: KeyHost}},
			[]string{"rule", "remote_address", "path", "method", "host"}},
	} {
		r := Rule{Name: "r", Key: tc.key, Global: &Global{RequestsPerUnit: 1, Unit: UnitHour}}
		if got := r.DescriptorKeys(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("DescriptorKeys(%v) = %v, want %v", tc.key, got, tc.want)
		}
	}
}

func TestUnit(t *testing.T) {
	for _, tc := range []struct {
		u    Unit
		name string
		d    time.Duration
	}{
		{UnitSecond, "second", time.Second}, {UnitMinute, "minute", time.Minute},
		{UnitHour, "hour", time.Hour}, {UnitDay, "day", 24 * time.Hour}, {0, "unknown", 0}, {9, "unknown", 0},
	} {
		if tc.u.String() != tc.name || tc.u.Duration() != tc.d {
			t.Errorf("Unit(%d): %q %v, want %q %v", tc.u, tc.u.String(), tc.u.Duration(), tc.name, tc.d)
		}
	}
}
