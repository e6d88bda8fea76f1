package limiter

import (
	"strings"
	"testing"
)

// lines renders h as "name: value" lines.
func lines(h *Headers) []string {
	var out []string
	for i := 0; i < h.Len(); i++ {
		name, value := h.At(i)
		out = append(out, name+": "+string(value))
	}
	return out
}

func TestAppendHeaders(t *testing.T) {
	two := `"rules":[{"name":"per-client","key":["remote_address"],"capacity":100,"refill":10,"interval":"1s"},
		{"name":"global","key":["method"],"capacity":2,"refill":1,"interval":"1m"}]`
	shadowFirst := `"rules":[{"name":"watch","key":["remote_address"],"capacity":1,"refill":1,"interval":"1h","shadow":true},
		{"name":"per-client","key":["remote_address"],"capacity":100,"refill":10,"interval":"1s"}]`
	tests := []struct {
		name     string
		rules    string
		headers  string
		requests int
		want     []string
	}{
		{"draft allowed", two, "draft", 1, []string{
			`ratelimit-policy: "per-client";q=100;w=10, "global";q=2;w=120`,
			`ratelimit: "per-client";r=99;t=1, "global";r=1;t=60`}},
		{"draft denied", two, "draft", 3, []string{
			`retry-after: 60`,
			`ratelimit-policy: "per-client";q=100;w=10, "global";q=2;w=120`,
			`ratelimit: "per-client";r=97;t=1, "global";r=0;t=120`}},
		{"legacy picks the tightest", two, "legacy", 1, []string{
			`x-ratelimit-limit: 2`, `x-ratelimit-remaining: 1`, `x-ratelimit-reset: 60`}},
		{"none still sends retry-after", two, "none", 3, []string{`retry-after: 60`}},
		// A shadow rule with no tokens left refuses nobody: the single
		// limit of the legacy headers is the enforced one (issue 10.6).
		{"legacy ignores shadow rules", shadowFirst, "legacy", 2, []string{
			`x-ratelimit-limit: 100`, `x-ratelimit-remaining: 98`, `x-ratelimit-reset: 1`}},
		{"draft names shadow rules", shadowFirst, "draft", 2, []string{
			`ratelimit-policy: "watch";q=1;w=3600, "per-client";q=100;w=10`,
			`ratelimit: "watch";r=0;t=3600, "per-client";r=98;t=1`}},
		{"both", two, "both", 2, []string{
			`ratelimit-policy: "per-client";q=100;w=10, "global";q=2;w=120`,
			`ratelimit: "per-client";r=98;t=1, "global";r=0;t=120`,
			`x-ratelimit-limit: 2`, `x-ratelimit-remaining: 0`, `x-ratelimit-reset: 120`}},
	}
	// Structured Field integers have at most 15 digits (RFC 8941 3.3.1): a
	// larger capacity is written as the largest one, or a strict client
	// drops the whole field. The legacy headers are plain numbers.
	huge := `"rules":[{"name":"huge","key":["remote_address"],"capacity":1000000000000000000,"refill":1,"interval":"1s"}]`
	tests = append(tests,
		struct {
			name     string
			rules    string
			headers  string
			requests int
			want     []string
		}{"draft integers fit 15 digits", huge, "both", 1, []string{
			`ratelimit-policy: "huge";q=999999999999999;w=9223372037`,
			`ratelimit: "huge";r=999999999999999;t=1`,
			`x-ratelimit-limit: 1000000000000000000`, `x-ratelimit-remaining: 999999999999999999`, `x-ratelimit-reset: 1`}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustConfig(t, `{`+tt.rules+`,"headers":"`+tt.headers+`"}`)
			l := newLimiter(t, cfg, newStore(), nil)
			var d *Decision
			for i := 0; i < tt.requests; i++ {
				d = l.Decide(get("/", "1.1.1.1:1"), at(0))
			}
			var h Headers
			l.AppendHeaders(&h, d)
			got := lines(&h)
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
