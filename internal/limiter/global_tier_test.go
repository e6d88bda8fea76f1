package limiter

import (
	"strings"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

const globalConfig = `{"rules":[
	{"name":"local","key":["remote_address"],"capacity":100,"refill":1,"interval":"1s"},
	{"name":"per-key","match":{"path_prefix":"/api/"},"key":["header:x-api-key","remote_address"],"cost":3,
	 "global":{"requests_per_unit":10,"unit":"minute"}},
	{"name":"watch","key":["method","host","path"],"shadow":true,"global":{"requests_per_unit":5,"unit":"second"}}],
	"rate_limit_service":{"cluster":"ratelimit","domain":"tokengate","timeout":"50ms"%s}}`

func newGlobalTier(t *testing.T, extra string) (*Global, *counters, *memStore) {
	t.Helper()
	cfg := mustConfig(t, strings.Replace(globalConfig, "%s", extra, 1))
	m := &counters{}
	s := newStore()
	l := newLimiter(t, cfg, s, m)
	if l.Global() == nil {
		t.Fatal("no global tier")
	}
	return l.Global(), m, s
}

func descriptors(t *testing.T, msg []byte) (*rlsv3.RateLimitRequest, [][]string) {
	t.Helper()
	var req rlsv3.RateLimitRequest
	if err := proto.Unmarshal(msg, &req); err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, d := range req.Descriptors {
		var e []string
		for _, en := range d.Entries {
			e = append(e, en.Key+"="+en.Value)
		}
		e = append(e, "hits="+d.HitsAddend.String())
		out = append(out, e)
	}
	return &req, out
}

func answer(t *testing.T, statuses ...*rlsv3.RateLimitResponse_DescriptorStatus) []byte {
	t.Helper()
	b, err := proto.Marshal(&rlsv3.RateLimitResponse{Statuses: statuses})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ok(remaining uint32) *rlsv3.RateLimitResponse_DescriptorStatus {
	return &rlsv3.RateLimitResponse_DescriptorStatus{Code: rlsv3.RateLimitResponse_OK, LimitRemaining: remaining}
}

func over(reset time.Duration) *rlsv3.RateLimitResponse_DescriptorStatus {
	return &rlsv3.RateLimitResponse_DescriptorStatus{Code: rlsv3.RateLimitResponse_OVER_LIMIT,
		CurrentLimit:       &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: 10, Unit: rlsv3.RateLimitResponse_RateLimit_MINUTE},
		DurationUntilReset: durationpb.New(reset)}
}

// TestGlobalDescriptors pins the descriptor shape the generator's RLS
// configuration must match.
func TestGlobalDescriptors(t *testing.T) {
	g, _, _ := newGlobalTier(t, "")
	var c Call
	msg, d := g.Begin(get("/api/x?q=1", "10.0.0.7:5000", "x-api-key", "k\xffy", ":authority", "API.Example.com:8443"), at(1), &c)
	if d != nil || msg == nil {
		t.Fatalf("Begin: %v %v", msg, d)
	}
	req, got := descriptors(t, msg)
	want := [][]string{
		{"rule=per-key", "header:x-api-key=k?y", "remote_address=10.0.0.7", `hits=value:3`},
		{"rule=watch", "method=GET", "host=api.example.com", "path=/api/x", `hits=value:1`},
	}
	if req.Domain != "tokengate" || strings.Join(flat(got), "|") != strings.Join(flat(want), "|") {
		t.Fatalf("domain %q descriptors\n got %q\nwant %q", req.Domain, got, want)
	}
	if len(c.Rules) != 2 || c.Rules[0] != 1 || c.Rules[1] != 2 || c.Start != 1 {
		t.Fatalf("call %+v", c)
	}
	// A missing part is "-"; a rule whose match fails is left out.
	msg, _ = g.Begin(get("/other", "[2001:db8::1]:80"), at(1), &c)
	_, got = descriptors(t, msg)
	if len(got) != 1 || got[0][0] != "rule=watch" {
		t.Fatalf("got %q", got)
	}
	msg, _ = g.Begin(get("/api/", "[2001:db8::1]:80"), at(1), &c)
	if _, got = descriptors(t, msg); got[0][1] != "header:x-api-key=-" || got[0][2] != "remote_address=2001:db8::1" {
		t.Fatalf("got %q", got)
	}
	if err := req.ValidateAll(); err != nil {
		t.Fatal(err)
	}
}

func flat(x [][]string) []string {
	var out []string
	for _, e := range x {
		out = append(out, strings.Join(e, ","))
	}
	return out
}

func TestGlobalNoMatchNoCall(t *testing.T) {
	cfg := mustConfig(t, `{"rules":[{"name":"g","match":{"methods":["POST"]},"key":["path"],
		"global":{"requests_per_unit":1,"unit":"hour"}}],"rate_limit_service":{"cluster":"c","domain":"d"}}`)
	l := newLimiter(t, cfg, newStore(), nil)
	var c Call
	if msg, d := l.Global().Begin(get("/", "1.1.1.1:1"), at(0), &c); msg != nil || d != nil {
		t.Fatalf("a GET made a call: %v %v", msg, d)
	}
}

// TestGlobalDenialCache: a refusal is remembered until duration_until_reset
// for that client only; shadow refusals are not.
func TestGlobalDenialCache(t *testing.T) {
	g, m, _ := newGlobalTier(t, "")
	alice := get("/api/a", "10.0.0.1:1", "x-api-key", "alice")
	bob := get("/api/a", "10.0.0.1:1", "x-api-key", "bob")
	var c Call
	sec := int64(time.Second)
	if msg, _ := g.Begin(alice, at(10*sec), &c); msg == nil {
		t.Fatal("no call")
	}
	d := g.Answer(&c, answer(t, over(30*time.Second), over(time.Second)), 10*sec)
	if last := d.Verdicts[len(d.Verdicts)-1]; !d.Denied || last.Rule != 1 || last.RetryAfter != 30*sec || !d.Verdicts[0].Allowed {
		t.Fatalf("answer: %+v", d)
	}
	var h Headers
	g.AppendHeaders(&h, d)
	if got := strings.Join(lines(&h), "|"); got != `retry-after: 30|ratelimit-policy: "per-key";q=10;w=60|ratelimit: "per-key";r=0;t=30` {
		t.Errorf("headers %q", got)
	}
	for _, tc := range []struct {
		name   string
		req    req
		at     int64
		cached bool
	}{
		{"same client", alice, 20 * sec, true},
		{"another client", bob, 20 * sec, false},
		{"at the reset", alice, 40 * sec, false},
	} {
		msg, d := g.Begin(tc.req, at(tc.at), &c)
		if tc.cached != (d != nil) || tc.cached == (msg != nil) {
			t.Fatalf("%s: msg %v decision %v", tc.name, msg != nil, d)
		}
		if tc.cached {
			if v := d.Verdicts[len(d.Verdicts)-1]; !d.Denied || v.RetryAfter != 20*sec {
				t.Fatalf("%s: %+v", tc.name, d)
			}
			h.Reset()
			g.AppendHeaders(&h, d)
			if got := strings.Join(lines(&h), "|"); got != `retry-after: 20|ratelimit-policy: "per-key";q=10;w=60|ratelimit: "per-key";r=0;t=20` {
				t.Errorf("%s: headers %q", tc.name, got)
			}
		}
	}
	if m.get(1, CounterRLSCached) != 1 || m.get(1, CounterRLSOverLimit) != 1 || m.get(2, CounterRLSOverLimit) != 1 ||
		m.get(2, CounterRLSCached) != 0 {
		t.Errorf("counters: cached %d over %d shadow over %d", m.get(1, CounterRLSCached), m.get(1, CounterRLSOverLimit), m.get(2, CounterRLSOverLimit))
	}
}

func TestGlobalAllowed(t *testing.T) {
	g, m, _ := newGlobalTier(t, "")
	var c Call
	g.Begin(get("/api/a", "10.0.0.1:1"), at(0), &c)
	d := g.Answer(&c, answer(t, ok(7), ok(1)), 0)
	if d.Denied || len(d.Verdicts) != 2 || d.Verdicts[0].Remaining != 7 {
		t.Fatalf("%+v", d)
	}
	if m.get(1, CounterRLSOK) != 1 || m.get(2, CounterRLSOK) != 1 {
		t.Error("rls_ok not counted")
	}
}

// TestGlobalFailureMode: errors, timeouts and unreadable answers end in the
// failure mode, counted; deny refuses with Retry-After only; shadow rules
// never refuse. Undecided (a panic in the filter) gives the same decision and
// counts nothing.
func TestGlobalFailureMode(t *testing.T) {
	for _, tc := range []struct {
		mode      string
		timeout   bool
		msg       []byte
		undecided bool
		denied    bool
	}{
		{"", true, nil, false, false},
		{`,"failure_mode":"allow"`, false, nil, false, false},
		{`,"failure_mode":"deny"`, true, nil, false, true},
		{`,"failure_mode":"deny"`, false, []byte{0xff}, false, true},
		{`,"failure_mode":"deny"`, false, []byte{}, false, true}, // no statuses for two descriptors
		{`,"failure_mode":"allow"`, false, nil, true, false},
		{`,"failure_mode":"deny"`, false, nil, true, true},
	} {
		g, m, _ := newGlobalTier(t, tc.mode)
		var c Call
		g.Begin(get("/api/a", "10.0.0.1:1"), at(0), &c)
		var d *Decision
		switch {
		case tc.undecided:
			d = g.Undecided(&c)
		case tc.msg != nil:
			d = g.Answer(&c, tc.msg, 0)
		default:
			d = g.Fail(&c, tc.timeout)
		}
		if d.Denied != tc.denied || len(d.Verdicts) != 2 || !d.Verdicts[0].Failure || !d.Verdicts[1].Failure {
			t.Fatalf("%s %v: %+v", tc.mode, tc.timeout, d)
		}
		for _, v := range d.Verdicts {
			if v.Rule == 2 && !v.Allowed {
				t.Errorf("%s: the shadow rule refused: %+v", tc.mode, d)
			}
		}
		want := CounterRLSError
		if tc.timeout {
			want = CounterRLSTimeout
		}
		switch {
		case tc.undecided:
			if m.get(1, CounterRLSError)+m.get(1, CounterRLSTimeout)+m.get(1, CounterRLSFailureMode) != 0 {
				t.Errorf("%s: Undecided counted", tc.mode)
			}
		case m.get(1, want) != 1 || m.get(1, CounterRLSFailureMode) != 1:
			t.Errorf("%s: %s not counted", tc.mode, want)
		}
		if tc.denied {
			var h Headers
			g.AppendHeaders(&h, d)
			if rec := lines(&h); len(rec) != 1 || rec[0] != "retry-after: 1" || d.Verdicts[1].Rule != 1 {
				t.Errorf("failure headers %q, last verdict %+v", rec, d.Verdicts[1])
			}
		}
	}
}

func TestGlobalTimedOut(t *testing.T) {
	g, _, _ := newGlobalTier(t, "")
	c := Call{Start: 0}
	ms := int64(time.Millisecond)
	for _, tc := range []struct {
		status uint32
		now    int64
		want   bool
	}{{4, 1, true}, {14, 10 * ms, false}, {14, 50 * ms, true}, {13, 60 * ms, true}} {
		if got := g.TimedOut(&c, tc.status, tc.now); got != tc.want {
			t.Errorf("status %d at %d: %v", tc.status, tc.now, got)
		}
	}
}

// TestDenialCacheBounded: however many clients are refused, the cache keeps
// at most ceil(cache_slots/4) keys per rule.
func TestDenialCacheBounded(t *testing.T) {
	g, _, s := newGlobalTier(t, `,"cache_slots":64`)
	before := s.len()
	var c Call
	for i := 0; i < 2000; i++ {
		r := get("/api/a", "10.0.0.1:1", "x-api-key", strings.Repeat("k", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26%26))+string(rune('a'+i/676)))
		if msg, _ := g.Begin(r, at(0), &c); msg == nil {
			continue
		}
		g.Answer(&c, answer(t, over(time.Hour), ok(1)), 0)
	}
	if n := s.len() - before; n > 16 || n < 8 {
		t.Fatalf("%d denial keys for 64 slots", n)
	}
}

func TestGlobalZeroAllocations(t *testing.T) {
	cfg := mustConfig(t, strings.Replace(globalConfig, "%s", "", 1))
	g := newLimiter(t, cfg, noAllocStore{}, nil).Global()
	r := noAllocReq{}
	resp := answer(t, ok(3), ok(1))
	var c Call
	run := func() {
		if msg, _ := g.Begin(r, at(0), &c); msg == nil {
			t.Fatal("no call")
		}
		if d := g.Answer(&c, resp, 0); d.Denied {
			t.Fatal("denied")
		}
	}
	run()
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Fatalf("%v allocations per request", n)
	}
}

func TestGlobalMetricNames(t *testing.T) {
	want := []string{"rls_ok", "rls_over_limit", "rls_cached", "rls_error", "rls_timeout", "rls_failure_mode"}
	for i, name := range want {
		c := CounterRLSOK + Counter(i)
		if !c.Global() || MetricName("r", c) != "tokengate.r."+name {
			t.Errorf("%d: %v %q", c, c.Global(), MetricName("r", c))
		}
	}
	if CounterAllowed.Global() || NumAllCounters.Global() {
		t.Error("Global() is true outside the global counters")
	}
}

// overall is an answer with overall_code code and the given statuses (none:
// the service said only yes or no, which the protocol allows).
func overall(t *testing.T, code rlsv3.RateLimitResponse_Code, statuses ...*rlsv3.RateLimitResponse_DescriptorStatus) []byte {
	t.Helper()
	b, err := proto.Marshal(&rlsv3.RateLimitResponse{OverallCode: code, Statuses: statuses})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGlobalOverallOverLimitNoStatuses: a service that answers only
// overall_code OVER_LIMIT refuses the request, as in Envoy's ratelimit
// filter: every non-shadow rule of the call counts as over, rls_over_limit
// (not rls_error, not the failure mode), with the configured quota in the
// headers, Retry-After up to the end of the current clock-aligned window,
// and the denial cached until then, not longer.
func TestGlobalOverallOverLimitNoStatuses(t *testing.T) {
	sec := int64(time.Second)
	for _, mode := range []string{`,"failure_mode":"allow"`, `,"failure_mode":"deny"`} {
		g, m, _ := newGlobalTier(t, mode)
		alice := get("/api/a", "10.0.0.1:1", "x-api-key", "alice")
		var c Call
		now := 75 * sec // 15 s into a minute: 45 s to its end
		if msg, _ := g.Begin(alice, at(now), &c); msg == nil || len(c.Rules) != 2 {
			t.Fatalf("%s: call %+v", mode, c)
		}
		d := g.Answer(&c, overall(t, rlsv3.RateLimitResponse_OVER_LIMIT), now)
		last := d.Verdicts[len(d.Verdicts)-1]
		if !d.Denied || last.Rule != 1 || last.Failure || last.RetryAfter != 45*sec || !d.Verdicts[0].Allowed || d.Verdicts[0].Rule != 2 {
			t.Fatalf("%s: %+v", mode, d)
		}
		var h Headers
		g.AppendHeaders(&h, d)
		if got := strings.Join(lines(&h), "|"); got != `retry-after: 45|ratelimit-policy: "per-key";q=10;w=60|ratelimit: "per-key";r=0;t=45` {
			t.Errorf("%s: headers %q", mode, got)
		}
		for ri, want := range map[int]int64{1: 1, 2: 1} {
			if m.get(ri, CounterRLSOverLimit) != want || m.get(ri, CounterRLSError) != 0 || m.get(ri, CounterRLSFailureMode) != 0 || m.get(ri, CounterRLSOK) != 0 {
				t.Errorf("%s: rule %d: over %d error %d failure mode %d ok %d", mode, ri, m.get(ri, CounterRLSOverLimit),
					m.get(ri, CounterRLSError), m.get(ri, CounterRLSFailureMode), m.get(ri, CounterRLSOK))
			}
		}
		// Cached until the window ends, and not past it.
		if msg, d := g.Begin(alice, at(119*sec), &c); msg != nil || d == nil || d.Verdicts[0].RetryAfter != sec {
			t.Fatalf("%s: one second before the window ends: msg %v decision %+v", mode, msg != nil, d)
		}
		if msg, d := g.Begin(alice, at(120*sec), &c); msg == nil || d != nil {
			t.Fatalf("%s: at the end of the window: msg %v decision %+v", mode, msg != nil, d)
		}
	}
}

// TestGlobalOverallOKNoStatuses: overall_code OK alone admits, counted
// rls_ok, even under failure_mode deny.
func TestGlobalOverallOKNoStatuses(t *testing.T) {
	g, m, _ := newGlobalTier(t, `,"failure_mode":"deny"`)
	var c Call
	g.Begin(get("/api/a", "10.0.0.1:1"), at(0), &c)
	d := g.Answer(&c, overall(t, rlsv3.RateLimitResponse_OK), 0)
	if d.Denied || len(d.Verdicts) != 2 {
		t.Fatalf("%+v", d)
	}
	for _, v := range d.Verdicts {
		if v.Failure || !v.Allowed {
			t.Errorf("verdict %+v", v)
		}
		if m.get(v.Rule, CounterRLSOK) != 1 || m.get(v.Rule, CounterRLSError) != 0 || m.get(v.Rule, CounterRLSFailureMode) != 0 {
			t.Errorf("rule %d: ok %d error %d", v.Rule, m.get(v.Rule, CounterRLSOK), m.get(v.Rule, CounterRLSError))
		}
	}
}

// TestGlobalOverallUnknownNoStatuses: an answer with neither a decision
// nor statuses (overall_code absent, UNKNOWN, or a code the protocol does
// not define) is an error: the failure mode decides, counted. Envoy's
// filter would admit it (it only asserts in debug builds); tokengate lets
// failure_mode choose.
func TestGlobalOverallUnknownNoStatuses(t *testing.T) {
	for _, msg := range [][]byte{{}, {0x08, 0x00}, {0x08, 0x07}} {
		for _, mode := range []string{"allow", "deny"} {
			g, m, _ := newGlobalTier(t, `,"failure_mode":"`+mode+`"`)
			var c Call
			g.Begin(get("/api/a", "10.0.0.1:1"), at(0), &c)
			d := g.Answer(&c, msg, 0)
			if d.Denied != (mode == "deny") || !d.Verdicts[0].Failure || !d.Verdicts[1].Failure {
				t.Errorf("%x %s: %+v", msg, mode, d)
			}
			if m.get(1, CounterRLSError) != 1 || m.get(1, CounterRLSFailureMode) != 1 || m.get(1, CounterRLSOK)+m.get(1, CounterRLSOverLimit) != 0 {
				t.Errorf("%x %s: error %d failure mode %d", msg, mode, m.get(1, CounterRLSError), m.get(1, CounterRLSFailureMode))
			}
		}
	}
}

// TestGlobalShadowOverallOverLimit: a shadow rule never refuses, however
// the service says no: overall_code OVER_LIMIT with no statuses for a call
// that only a shadow rule matches admits, counted rls_over_limit (would
// have refused), not rls_error, even under failure_mode deny.
func TestGlobalShadowOverallOverLimit(t *testing.T) {
	g, m, s := newGlobalTier(t, `,"failure_mode":"deny"`)
	before := s.len()
	var c Call
	if msg, _ := g.Begin(get("/other", "10.0.0.1:1"), at(0), &c); msg == nil || len(c.Rules) != 1 || c.Rules[0] != 2 {
		t.Fatalf("call %+v", c)
	}
	d := g.Answer(&c, overall(t, rlsv3.RateLimitResponse_OVER_LIMIT), 0)
	if d.Denied || len(d.Verdicts) != 1 || !d.Verdicts[0].Allowed || d.Verdicts[0].Failure {
		t.Fatalf("%+v", d)
	}
	if m.get(2, CounterRLSOverLimit) != 1 || m.get(2, CounterRLSError) != 0 || m.get(2, CounterRLSFailureMode) != 0 {
		t.Errorf("over %d error %d failure mode %d", m.get(2, CounterRLSOverLimit), m.get(2, CounterRLSError), m.get(2, CounterRLSFailureMode))
	}
	if s.len() != before {
		t.Error("a shadow refusal was cached")
	}
}

// TestGlobalOverallWithStatuses: statuses that pair with the descriptors
// say which rules are over. overall_code OVER_LIMIT explained by a shadow
// rule's status admits (shadow rules never refuse); OVER_LIMIT with every
// status OK refuses by every non-shadow rule, as Envoy's filter follows
// overall_code; statuses that do not pair with the descriptors are ignored
// and overall_code decides. A status over its limit without
// duration_until_reset waits for the end of the current window.
func TestGlobalOverallWithStatuses(t *testing.T) {
	sec := int64(time.Second)
	for _, tc := range []struct {
		name   string
		msg    []byte
		denied bool
		retry  int64
		over   [3]int64 // rls_over_limit of rules 1, 2
	}{
		{"a shadow status explains it", overall(t, rlsv3.RateLimitResponse_OVER_LIMIT, ok(3), over(time.Second)), false, 0, [3]int64{1: 0, 2: 1}},
		{"no status explains it", overall(t, rlsv3.RateLimitResponse_OVER_LIMIT, ok(3), ok(1)), true, 45 * sec, [3]int64{1: 1, 2: 1}},
		{"a status over, overall absent", answer(t, over(30*time.Second), ok(1)), true, 30 * sec, [3]int64{1: 1, 2: 0}},
		{"a status over without a reset", answer(t, &rlsv3.RateLimitResponse_DescriptorStatus{Code: rlsv3.RateLimitResponse_OVER_LIMIT}, ok(1)), true, 45 * sec, [3]int64{1: 1, 2: 0}},
		{"unpaired statuses, overall OK", overall(t, rlsv3.RateLimitResponse_OK, over(30*time.Second)), false, 0, [3]int64{}},
		{"unpaired statuses, overall OVER_LIMIT", overall(t, rlsv3.RateLimitResponse_OVER_LIMIT, ok(3)), true, 45 * sec, [3]int64{1: 1, 2: 1}},
	} {
		g, m, _ := newGlobalTier(t, `,"failure_mode":"deny"`)
		var c Call
		now := 75 * sec
		g.Begin(get("/api/a", "10.0.0.1:1"), at(now), &c)
		d := g.Answer(&c, tc.msg, now)
		last := d.Verdicts[len(d.Verdicts)-1]
		if d.Denied != tc.denied || last.Failure || len(d.Verdicts) != 2 || tc.denied && (last.Rule != 1 || last.RetryAfter != tc.retry) {
			t.Errorf("%s: %+v", tc.name, d)
		}
		for ri := 1; ri <= 2; ri++ {
			if m.get(ri, CounterRLSOverLimit) != tc.over[ri] || m.get(ri, CounterRLSOverLimit)+m.get(ri, CounterRLSOK) != 1 || m.get(ri, CounterRLSError) != 0 {
				t.Errorf("%s: rule %d: over %d ok %d error %d", tc.name, ri, m.get(ri, CounterRLSOverLimit), m.get(ri, CounterRLSOK), m.get(ri, CounterRLSError))
			}
		}
	}
}
