package limiter

import (
	"strings"
	"testing"
)

type recorder []string

func (r *recorder) Emit(name string, value []byte) { *r = append(*r, name+": "+string(value)) }

func TestEmitHeaders(t *testing.T) {
	two := `"rules":[{"name":"per-client","key":["remote_address"],"capacity":100,"refill":10,"interval":"1s"},
		{"name":"global","key":["method"],"capacity":2,"refill":1,"interval":"1m"}]`
	tests := []struct {
		name     string
		headers  string
		requests int
		want     []string
	}{
		{"draft allowed", "draft", 1, []string{
			`ratelimit-policy: "per-client";q=100;w=10, "global";q=2;w=120`,
			`ratelimit: "per-client";r=99;t=1, "global";r=1;t=60`}},
		{"draft denied", "draft", 3, []string{
			`retry-after: 60`,
			`ratelimit-policy: "per-client";q=100;w=10, "global";q=2;w=120`,
			`ratelimit: "per-client";r=97;t=1, "global";r=0;t=120`}},
		{"legacy picks the tightest", "legacy", 1, []string{
			`x-ratelimit-limit: 2`, `x-ratelimit-remaining: 1`, `x-ratelimit-reset: 60`}},
		{"none still sends retry-after", "none", 3, []string{`retry-after: 60`}},
		{"both", "both", 2, []string{
			`ratelimit-policy: "per-client";q=100;w=10, "global";q=2;w=120`,
			`ratelimit: "per-client";r=98;t=1, "global";r=0;t=120`,
			`x-ratelimit-limit: 2`, `x-ratelimit-remaining: 0`, `x-ratelimit-reset: 120`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustConfig(t, `{`+two+`,"headers":"`+tt.headers+`"}`)
			l := newLimiter(t, cfg, newStore(), nil)
			var d *Decision
			for i := 0; i < tt.requests; i++ {
				d = l.Decide(get("/", "1.1.1.1:1"), at(0))
			}
			var got recorder
			l.EmitHeaders(&got, d, nil)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestSeconds(t *testing.T) {
	for ns, want := range map[int64]int64{0: 0, -5: 0, 1: 1, 1e9: 1, 1e9 + 1: 2, 4_300_000_000: 5} {
		if got := Seconds(ns); got != want {
			t.Errorf("Seconds(%d) = %d, want %d", ns, got, want)
		}
	}
}
