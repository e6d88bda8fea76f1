package limiter

import (
	"unicode/utf8"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/rls"
)

// The global tier: rules with config.Rule.Global are decided by a rate limit
// service (RLS) speaking Envoy's ShouldRateLimit protocol. Global prepares
// one call per request covering every matching global rule (one descriptor
// each, hits_addend = cost) and reads its answer; the caller makes the call.
// The answer is read as Envoy's ratelimit filter reads it: overall_code
// decides, the per-descriptor statuses (optional) say which rules refused.
// A denial is remembered in shared data until the RLS says the window
// resets (when it does not say, until the current window ends), in a table
// bounded like the buckets' (cache_slots entries per rule), so a client
// that keeps knocking costs no round trip.

// Counters of global rules (the local ones above are not defined for them).
const (
	CounterRLSOK          Counter = iota + NumCounters // the RLS admitted the request
	CounterRLSOverLimit                                // the RLS refused it (a shadow rule: would have)
	CounterRLSCached                                   // refused from the denial cache, no call made
	CounterRLSError                                    // the call failed (unreachable, gRPC error, bad answer)
	CounterRLSTimeout                                  // the call timed out
	CounterRLSFailureMode                              // decisions taken by rate_limit_service.failure_mode
	NumAllCounters
)

var globalCounterNames = [NumAllCounters - NumCounters]string{
	"rls_ok", "rls_over_limit", "rls_cached", "rls_error", "rls_timeout", "rls_failure_mode",
}

// Global reports whether c is a counter of global rules.
func (c Counter) Global() bool { return c >= NumCounters && c < NumAllCounters }

// Call is the state of one request's RLS call, kept by the caller between
// Begin and Answer or Fail. Its slices are reused; the zero value is ready.
type Call struct {
	Rules []int    // global rules covered, in descriptor order
	fps   []uint64 // their client fingerprints, for the denial cache
	Start int64    // when Begin ran, nanoseconds
}

// Global is the global tier of a Limiter. Like the Limiter it is not safe
// for concurrent use.
type Global struct {
	l        *Limiter
	rls      *config.RateLimitService
	rules    []globalRule // by configuration index; zero for local rules
	service  []byte
	enc      rls.Encoder
	resp     rls.Response
	val      []byte
	decision Decision
	quota    []quota // per verdict of decision: what the headers say
	deny     int     // index of the refusing verdict while a decision is built
	set      denialSet
}

type globalRule struct {
	keys      []string // descriptor entry keys: config.DescriptorRuleKey, then the parts
	prefix    []byte   // shared-data key prefix of the rule's denial table
	nsets     uint64
	nameBytes []byte
}

// quota is what one global verdict's headers show.
type quota struct {
	limit  int64 // requests per window
	window int64 // seconds
}

// Global returns the limiter's global tier, nil when no rule is global.
func (l *Limiter) Global() *Global { return l.global }

func newGlobal(l *Limiter, plugin string) *Global {
	cfg := l.cfg
	s := cfg.RateLimitService
	if s == nil {
		return nil
	}
	g := &Global{
		l:       l,
		rls:     s,
		rules:   make([]globalRule, len(cfg.Rules)),
		service: rls.AppendGrpcService(nil, s.Cluster, s.Authority),
		val:     make([]byte, 0, 256),
		quota:   make([]quota, 0, len(cfg.Rules)),
	}
	g.decision.Verdicts = make([]Verdict, 0, len(cfg.Rules))
	for i := range cfg.Rules {
		r := &cfg.Rules[i]
		if r.Global == nil {
			continue
		}
		g.rules[i] = globalRule{
			keys:      r.DescriptorKeys(),
			prefix:    []byte("tokengate/" + plugin + "/" + r.Name + "/deny/"),
			nsets:     uint64((s.CacheSlots + ways - 1) / ways),
			nameBytes: []byte(r.Name),
		}
	}
	return g
}

// Service returns the first argument of proxy_grpc_call: a serialized
// GrpcService naming the RLS cluster and authority.
func (g *Global) Service() []byte { return g.service }

// Timeout returns the call's timeout in milliseconds.
func (g *Global) Timeout() uint32 { return uint32(g.rls.Timeout.Milliseconds()) }

// Begin matches req against the global rules. It returns:
//   - msg != nil: the RateLimitRequest to send; c records the call.
//   - d != nil: the request is refused from the denial cache (no call).
//   - both nil: no global rule matches; nothing to do.
//
// msg and d are valid until the next call on g.
func (g *Global) Begin(req Request, clock Clock, c *Call) (msg []byte, d *Decision) {
	l := g.l
	c.Rules, c.fps = c.Rules[:0], c.fps[:0]
	var timed bool
	var now int64
	for i := range l.rules {
		r := l.rules[i].cfg
		if r.Global == nil || !matches(&r.Match, req) {
			continue
		}
		if !timed {
			now, timed = clock.Now(), true
		}
		l.keyBuf = l.appendKey(l.keyBuf[:0], &l.rules[i], req)
		fp := hash64(l.seed, l.keyBuf) | 1
		if !r.Shadow {
			if until, ok := g.cached(i, fp, now); ok {
				l.count(i, CounterRLSCached, 1)
				return nil, g.cachedDenial(i, until-now)
			}
		}
		c.Rules = append(c.Rules, i)
		c.fps = append(c.fps, fp)
	}
	if len(c.Rules) == 0 {
		return nil, nil
	}
	c.Start = now
	g.enc.Reset(g.rls.Domain, 0)
	for _, i := range c.Rules {
		g.appendDescriptor(i, req)
	}
	return g.enc.Bytes(), nil
}

func (g *Global) appendDescriptor(ri int, req Request) {
	l := g.l
	r := l.rules[ri].cfg
	gr := &g.rules[ri]
	g.enc.Begin()
	g.enc.Entry(config.DescriptorRuleKey, gr.nameBytes)
	for k, part := range r.Key {
		g.val = g.val[:0]
		if part.Kind == config.KeyRemoteAddress {
			if ip, ok := clientIP(req, l.cfg.TrustedHops); ok {
				g.val = appendAddr(g.val, ip)
			}
		} else {
			v, _ := partValue(part, req)
			g.val = appendUTF8(g.val, v)
			if part.Kind == config.KeyHost {
				lowerASCII(g.val)
			}
		}
		if len(g.val) == 0 {
			g.val = append(g.val, config.MissingValue...)
		}
		g.enc.Entry(gr.keys[k+1], g.val)
	}
	g.enc.End(uint64(r.Cost))
}

// appendUTF8 appends v with every byte that is not valid UTF-8 replaced by
// '?': descriptor values are protobuf strings, which the RLS would reject
// (and the request would then fall to the failure mode).
func appendUTF8(dst, v []byte) []byte {
	for len(v) > 0 {
		c, size := utf8.DecodeRune(v)
		if c == utf8.RuneError && size <= 1 {
			dst = append(dst, '?')
		} else {
			dst = append(dst, v[:size]...)
		}
		v = v[size:]
	}
	return dst
}

// Answer reads the RLS answer msg to call c at now, as Envoy's ratelimit
// filter does: overall_code decides, and the statuses, when there is one per
// descriptor, say which rules are over their limits.
//
//   - A rule whose status is OVER_LIMIT is over (even if overall_code says
//     OK: refusing is the safer reading of that contradiction).
//   - overall_code OVER_LIMIT that no status explains (no usable statuses,
//     or none of them OVER_LIMIT) puts every rule of the call over, as
//     Envoy refuses on it. One explained by a shadow rule's status alone
//     admits: shadow rules never refuse.
//   - No usable statuses and overall_code neither OK nor OVER_LIMIT is an
//     error: the failure mode decides. So is an answer that cannot be read.
//
// Statuses that do not pair one to one with the descriptors are ignored:
// nothing says which rule each one is about. A rule over its limit that is
// not shadow refuses; a refusal with no duration_until_reset from the
// service waits for the end of the current window of the rule's unit
// (windows aligned on Unix time, as envoyproxy/ratelimit's are), and is
// remembered in the denial cache until that reset, never past it.
func (g *Global) Answer(c *Call, msg []byte, now int64) *Decision {
	l := g.l
	if err := g.resp.Decode(msg); err != nil {
		return g.Fail(c, false)
	}
	statuses := g.resp.Statuses
	if len(statuses) != len(c.Rules) {
		statuses = nil
	}
	if statuses == nil && g.resp.Overall == rls.CodeUnknown {
		return g.Fail(c, false)
	}
	allOver := g.resp.Overall == rls.CodeOverLimit
	for k := range statuses {
		if statuses[k].Code == rls.CodeOverLimit {
			allOver = false
			break
		}
	}
	d := g.reset()
	for k, ri := range c.Rules {
		var st *rls.Status
		if statuses != nil {
			st = &statuses[k]
		}
		q := g.quotaOf(ri, st)
		if !allOver && (st == nil || st.Code != rls.CodeOverLimit) {
			l.count(ri, CounterRLSOK, 1)
			v := Verdict{Rule: ri, Allowed: true}
			if st != nil {
				v.Remaining, v.Reset = int64(st.Remaining), st.UntilReset
			}
			g.add(d, v, q)
			continue
		}
		l.count(ri, CounterRLSOverLimit, 1)
		shadow := l.rules[ri].cfg.Shadow
		reset := windowLeft(q.window, now)
		if st != nil && st.HasReset {
			reset = st.UntilReset
		}
		v := Verdict{Rule: ri, Allowed: shadow, Reset: reset, RetryAfter: reset}
		if st != nil && st.Code == rls.CodeOverLimit {
			v.Remaining = int64(st.Remaining)
		}
		if !shadow && reset > 0 {
			g.remember(ri, c.fps[k], now+reset, now)
		}
		g.add(d, v, q)
	}
	return g.finish(d)
}

// windowLeft is the time from now to the end of the current window of
// window seconds, windows aligned on Unix time (as envoyproxy/ratelimit
// counts them): more than 0, at most the window.
func windowLeft(window, now int64) int64 {
	span := window * 1e9
	return span - (now%span+span)%span
}

// Fail decides call c by rate_limit_service.failure_mode, counted: the call
// could not be made, failed, timed out (timeout) or gave an unreadable
// answer.
func (g *Global) Fail(c *Call, timeout bool) *Decision {
	l := g.l
	for _, ri := range c.Rules {
		if timeout {
			l.count(ri, CounterRLSTimeout, 1)
		} else {
			l.count(ri, CounterRLSError, 1)
		}
		l.count(ri, CounterRLSFailureMode, 1)
	}
	return g.Undecided(c)
}

// Undecided returns the decision rate_limit_service.failure_mode gives call
// c: under "deny" every rule of the call that is not shadow refuses, with a
// Retry-After of one second and no quota; under "allow" all admit. Unlike
// Fail it counts nothing: the filter uses it when a panic left the call
// undecided (the Global counterpart of Limiter.Undecided), and counts that
// itself. The decision is reused like Answer's.
func (g *Global) Undecided(c *Call) *Decision {
	d := g.reset()
	for _, ri := range c.Rules {
		v := Verdict{Rule: ri, Allowed: true, Failure: true}
		if g.rls.FailureMode == config.FailDeny && !g.l.rules[ri].cfg.Shadow {
			v.Allowed, v.RetryAfter = false, failureRetryAfter
		}
		g.add(d, v, quota{})
	}
	return g.finish(d)
}

// TimedOut reports whether a call that ended with a gRPC status at now
// ran into its timeout: status DEADLINE_EXCEEDED (4), or, as older Envoys
// report it, any failure once the timeout has passed.
func (g *Global) TimedOut(c *Call, grpcStatus uint32, now int64) bool {
	const deadlineExceeded = 4
	return grpcStatus == deadlineExceeded || now-c.Start >= int64(g.rls.Timeout)
}

func (g *Global) reset() *Decision {
	d := &g.decision
	d.Verdicts, d.Denied, g.deny = d.Verdicts[:0], false, 0
	g.quota = g.quota[:0]
	return d
}

func (g *Global) add(d *Decision, v Verdict, q quota) {
	d.Verdicts = append(d.Verdicts, v)
	g.quota = append(g.quota, q)
	if !v.Allowed && !d.Denied {
		d.Denied, g.deny = true, len(d.Verdicts)-1
	}
}

// finish moves the refusing verdict, if any, last, as Decision promises.
// Unlike the local rules, every global rule of the call was counted by the
// service, so the verdicts after it stay.
func (g *Global) finish(d *Decision) *Decision {
	if last := len(d.Verdicts) - 1; d.Denied && g.deny != last {
		d.Verdicts[g.deny], d.Verdicts[last] = d.Verdicts[last], d.Verdicts[g.deny]
		g.quota[g.deny], g.quota[last] = g.quota[last], g.quota[g.deny]
	}
	return d
}

// quotaOf is the limit a verdict's headers show: the RLS's current_limit,
// else the configured one.
func (g *Global) quotaOf(ri int, st *rls.Status) quota {
	gl := g.l.rules[ri].cfg.Global
	q := quota{limit: gl.RequestsPerUnit, window: int64(gl.Unit.Duration() / 1e9)}
	if st != nil && st.HasLimit && st.RequestsPerUnit > 0 {
		q.limit = int64(st.RequestsPerUnit)
		if w := config.Unit(st.Unit).Duration(); w > 0 {
			q.window = int64(w / 1e9)
		}
	}
	return q
}

func (g *Global) cachedDenial(ri int, left int64) *Decision {
	d := g.reset()
	g.add(d, Verdict{Rule: ri, Remaining: 0, Reset: left, RetryAfter: left}, g.quotaOf(ri, nil))
	return d
}

// AppendHeaders renders into h the headers of a refusal d from Begin,
// Answer or Fail: Retry-After, and the rate-limit headers of the refusing
// rule as the header mode asks (none for a failure-mode refusal).
func (g *Global) AppendHeaders(h *Headers, d *Decision) {
	last := len(d.Verdicts) - 1
	v := d.Verdicts[last]
	h.retryAfter(v.RetryAfter)
	if !v.known() {
		return
	}
	q := g.quota[last]
	mode := g.l.cfg.Headers
	if mode.Draft() {
		h.buf = append(append(append(h.buf, '"'), g.rules[v.Rule].nameBytes...), `";q=`...)
		h.buf = appendInt(h.buf, q.limit)
		h.buf = append(h.buf, ";w="...)
		h.buf = appendInt(h.buf, q.window)
		h.end(HeaderPolicy)
		h.buf = g.l.appendItem(h.buf, v)
		h.end(HeaderRateLimit)
	}
	if mode.Legacy() {
		h.legacy(q.limit, v.Remaining, v.Reset)
	}
}
