package limiter

import "testing"

// TestGlobalRulesSkipped: a global rule is the rate limit service's; the
// limiter neither decides it nor counts it, and local rules around it keep
// their indices in verdicts and counters.
func TestGlobalRulesSkipped(t *testing.T) {
	cfg := mustConfig(t, `{"rules":[
		{"name":"fleet","key":["remote_address"],"global":{"requests_per_unit":1,"unit":"hour"}},
		{"name":"local","key":["remote_address"],"capacity":1,"refill":1,"interval":"1h"}],
		"rate_limit_service":{"cluster":"ratelimit","domain":"tokengate"}}`)
	m := &counters{}
	l := newLimiter(t, cfg, newStore(), m)
	d := l.Decide(get("/", "1.1.1.1:1"), at(0))
	if d.Denied || len(d.Verdicts) != 1 || d.Verdicts[0].Rule != 1 {
		t.Fatalf("first request: %+v", d)
	}
	d = l.Decide(get("/", "1.1.1.1:1"), at(0))
	if !d.Denied || len(d.Verdicts) != 1 || d.Verdicts[0].Rule != 1 {
		t.Fatalf("second request: %+v", d)
	}
	var h Headers
	l.AppendHeaders(&h, d)
	rec := lines(&h)
	if len(rec) < 2 || rec[1] != `ratelimit-policy: "local";q=1;w=3600` {
		t.Errorf("headers %q: the policy must name the local rule only", rec)
	}
	for c := Counter(0); c < NumCounters; c++ {
		if n := m.get(0, c); n != 0 {
			t.Errorf("global rule counted %s = %d", c, n)
		}
	}
	if m.get(1, CounterAllowed) != 1 || m.get(1, CounterLimited) != 1 {
		t.Errorf("local counters: allowed %d limited %d", m.get(1, CounterAllowed), m.get(1, CounterLimited))
	}
}
