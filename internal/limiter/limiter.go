// Package limiter decides whether a request may pass: it matches the rules
// of a configuration, builds each rule's client key, and takes tokens from
// that client's bucket in proxy-wasm shared data with compare-and-swap, so
// every worker VM of one Envoy draws from the same budget.
//
// It talks to the host only through Store and Metrics and is handed the time,
// so it runs natively in tests against the project's Envoy-faithful store.
// A Limiter belongs to one VM and is not safe for concurrent use; VMs share
// state only through the Store.
package limiter

import (
	"encoding/binary"

	"github.com/tokengate/tokengate/internal/bucket"
	"github.com/tokengate/tokengate/internal/config"
)

// Counter names one per-rule metric.
type Counter uint8

const (
	CounterAllowed       Counter = iota // requests the rule admitted
	CounterLimited                      // requests the rule rejected
	CounterShadowLimited                // requests a shadow rule would have rejected
	CounterCASRetries                   // compare-and-swap attempts lost to another worker
	CounterCASExhausted                 // requests refused because every compare-and-swap attempt was lost
	CounterFailureMode                  // decisions taken by failure_mode (shared data unusable)
	CounterEvictions                    // full buckets forgotten to make room
	CounterShared                       // requests served from another client's bucket (set full)
	CounterGarbage                      // shared-data values that were not ours, reset
	NumCounters
)

var counterNames = [NumCounters]string{
	"allowed", "limited", "shadow_limited", "cas_retries", "cas_exhausted", "failure_mode", "evictions", "shared", "garbage_reset",
}

func (c Counter) String() string {
	if c.Global() {
		return globalCounterNames[c-NumCounters]
	}
	return counterNames[c]
}

// MetricName returns the proxy-wasm metric name of a rule's counter. Envoy
// exposes it as "wasmcustom." + the name.
func MetricName(rule string, c Counter) string {
	return "tokengate." + rule + "." + c.String()
}

// Metrics receives counter increments, by rule index.
type Metrics interface {
	Add(rule int, c Counter, delta int64)
}

// Verdict is the outcome of one rule for one request.
type Verdict struct {
	Rule       int   // index in the configuration's rules
	Allowed    bool  // the rule admitted the request (a shadow rule may not have)
	Failure    bool  // decided by failure_mode: Remaining and Reset are unknown
	Exhausted  bool  // refused because the compare-and-swap loop lost every attempt: Remaining and Reset are unknown
	Remaining  int64 // tokens left after this request
	Reset      int64 // nanoseconds until the bucket is full again
	RetryAfter int64 // when !Allowed: nanoseconds until cost tokens are back
}

// Decision is the outcome of all matching rules for one request, in rule
// order. Rules are checked until one that is not shadow rejects; tokens
// taken by the rules before it stay taken (a rejected client keeps paying
// for its attempts), and rules after it are not checked. It is reused by the
// next Decide: copy what must outlive it.
type Decision struct {
	Verdicts []Verdict
	// Denied reports that a non-shadow rule rejected the request: the last
	// of Verdicts.
	Denied bool
}

type rule struct {
	cfg    *config.Rule
	limit  bucket.Limit
	prefix []byte // shared-data key prefix of the rule's sets
	nsets  uint64
	policy string // the rule's RateLimit-Policy item (local rules)
	// remainingPrefix starts the rule's RateLimit item: "name";r= (every
	// rule, global ones included)
	remainingPrefix string
}

// Limiter applies one configuration. The zero value is not usable: use New
// then Start.
type Limiter struct {
	cfg      *config.Config
	store    Store
	metrics  Metrics
	rules    []rule
	seedKey  []byte
	epochKey []byte
	seed     uint64

	keyBuf   []byte
	nameBuf  []byte
	set      set
	decision Decision

	// The last RateLimit-Policy value rendered, and the rules it names.
	policyBuf []byte
	policySet uint64
	policyOK  bool

	global *Global // nil when no rule is global
}

// New prepares a limiter for cfg. plugin names the shared-data namespace
// inside the vm_id: filters with the same plugin name and rule name share
// buckets. Call Start before Decide.
func New(cfg *config.Config, plugin string, store Store, m Metrics) *Limiter {
	l := &Limiter{
		cfg:      cfg,
		store:    store,
		metrics:  m,
		seedKey:  []byte("tokengate/" + plugin + "/seed"),
		epochKey: []byte("tokengate/" + plugin + "/epoch"),
		keyBuf:   make([]byte, 0, 256),
		nameBuf:  make([]byte, 0, 128),
	}
	l.decision.Verdicts = make([]Verdict, 0, len(cfg.Rules))
	for i := range cfg.Rules {
		r := &cfg.Rules[i]
		if r.Global != nil { // decided by the rate limit service, not here
			l.rules = append(l.rules, rule{cfg: r, remainingPrefix: `"` + r.Name + `";r=`})
			continue
		}
		l.rules = append(l.rules, rule{
			cfg:             r,
			limit:           r.Limit(),
			prefix:          []byte("tokengate/" + plugin + "/" + r.Name + "/"),
			nsets:           uint64((cfg.Slots + ways - 1) / ways),
			policy:          policyItem(r),
			remainingPrefix: `"` + r.Name + `";r=`,
		})
	}
	l.global = newGlobal(l, plugin)
	return l
}

// Start learns the shared hash seed, creating it from random if this is the
// first VM. Call it once, while configuring.
func (l *Limiter) Start(now int64, random uint64) error {
	epoch, err := l.freshCAS(now)
	if err != nil {
		return err
	}
	seed, _, err := l.store.GetSharedData(l.seedKey)
	if err == ErrNotFound {
		var mine [8]byte
		binary.LittleEndian.PutUint64(mine[:], random)
		// Created atomically like a set (see check); it loses harmlessly,
		// with ErrCASMismatch, to a VM that created it first.
		if err := l.store.SetSharedData(l.seedKey, mine[:], epoch); err != nil && err != ErrCASMismatch {
			return &startError{"creating", l.seedKey, err}
		}
		seed, _, err = l.store.GetSharedData(l.seedKey)
	}
	if err != nil {
		return &startError{"reading", l.seedKey, err}
	}
	// Hashing the stored bytes gives every VM the same seed, whatever they are.
	l.seed = hash64(0, seed)
	return nil
}

// freshCAS writes the time into the epoch key and returns the cas the store
// gave that write: a number its counter issued just now. A missing key
// created with it (a Set with that cas) cannot overwrite a key another
// worker creates in between: that one was given another number by the same
// counter, unless the counter ran through all 2^32 numbers between these
// calls and ours.
func (l *Limiter) freshCAS(now int64) (uint32, error) {
	var stamp [8]byte
	binary.LittleEndian.PutUint64(stamp[:], uint64(now))
	if err := l.store.SetSharedData(l.epochKey, stamp[:], 0); err != nil {
		return 0, &startError{"writing", l.epochKey, err}
	}
	_, cas, err := l.store.GetSharedData(l.epochKey)
	if err != nil {
		return 0, &startError{"reading", l.epochKey, err}
	}
	return cas, nil
}

// startError is a shared-data step that failed: what was done to which key,
// and the store's error, which errors.Is reaches.
type startError struct {
	op  string // writing, reading, creating
	key []byte
	err error
}

func (e *startError) Error() string {
	return "limiter: " + e.op + " " + string(e.key) + ": " + e.err.Error()
}

func (e *startError) Unwrap() error { return e.err }

// Clock tells the time in nanoseconds (Unix time, in Envoy).
type Clock interface {
	Now() int64
}

// Decide checks req against every matching local rule (global rules are
// left to the rate limit service). It reads clock once, and
// only when a rule matches: in a VM, reading the time is a host call.
func (l *Limiter) Decide(req Request, clock Clock) *Decision {
	d := &l.decision
	d.Verdicts, d.Denied = d.Verdicts[:0], false
	var timed bool
	var now int64
	for i := range l.rules {
		r := &l.rules[i]
		if r.cfg.Global != nil {
			continue
		}
		if !matches(&r.cfg.Match, req) {
			continue
		}
		if !timed {
			now, timed = clock.Now(), true
		}
		v := l.check(i, req, now)
		d.Verdicts = append(d.Verdicts, v)
		if !v.Allowed && !r.cfg.Shadow {
			d.Denied = true
			break
		}
	}
	return d
}

// matches reports whether req matches m, reading only the headers m uses.
func matches(m *config.Match, req Request) bool {
	if m.PathPrefix != "" {
		path, _ := req.Header(":path")
		if len(path) < len(m.PathPrefix) || bytesToString(path[:len(m.PathPrefix)]) != m.PathPrefix {
			return false
		}
	}
	if len(m.Methods) > 0 {
		method, _ := req.Header(":method")
		found := false
		for _, want := range m.Methods {
			if bytesToString(method) == want {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if len(m.Hosts) > 0 {
		authority, _ := req.Header(":authority")
		host := hostOf(authority)
		for _, pattern := range m.Hosts {
			if matchHost(pattern, host) {
				return true
			}
		}
		return false
	}
	return true
}

// SingleHeader returns the request header the rules read (the local ones
// in Decide, the global ones in Global.Begin) when they read exactly one
// (pseudo headers included, such as ":path"), so that the host can be asked
// for that header alone instead of the whole map; ok is false when they read
// none or several.
func (l *Limiter) SingleHeader() (name string, ok bool) {
	var names []string
	add := func(n string) {
		for _, have := range names {
			if have == n {
				return
			}
		}
		names = append(names, n)
	}
	for i := range l.rules {
		r := l.rules[i].cfg
		if r.Match.PathPrefix != "" {
			add(":path")
		}
		if len(r.Match.Methods) > 0 {
			add(":method")
		}
		if len(r.Match.Hosts) > 0 {
			add(":authority")
		}
		for _, part := range r.Key {
			if part.Kind != config.KeyRemoteAddress {
				add(partHeader(part))
			} else if l.cfg.TrustedHops > 0 {
				add(headerXFF)
			}
		}
	}
	if len(names) != 1 {
		return "", false
	}
	return names[0], true
}

// Key part tags. A part that the request lacks is written as tagMissing, so
// every request without, say, an API key shares one bucket (per value of the
// other parts) instead of escaping the limit.
const (
	tagPresent = 0x01
	tagMissing = 0xff
)

// appendKey writes the rule's client key for req: per part, a kind byte, then
// tagMissing or tagPresent, a length and the value.
func (l *Limiter) appendKey(dst []byte, r *rule, req Request) []byte {
	for _, part := range r.cfg.Key {
		dst = append(dst, byte(part.Kind))
		if part.Kind == config.KeyRemoteAddress {
			if ip, ok := clientIP(req, l.cfg.TrustedHops); ok {
				dst = append(dst, tagPresent, 16)
				dst = append(dst, ip[:]...)
			} else {
				dst = append(dst, tagMissing)
			}
			continue
		}
		val, ok := partValue(part, req)
		if !ok {
			dst = append(dst, tagMissing)
			continue
		}
		dst = appendValue(dst, val)
		if part.Kind == config.KeyHost {
			lowerASCII(dst[len(dst)-len(val):])
		}
	}
	return dst
}

// appendHex appends n in lower-case hexadecimal, without leading zeros.
func appendHex(dst []byte, n uint64) []byte {
	const digits = "0123456789abcdef"
	var tmp [16]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = digits[n&15]
		n >>= 4
		if n == 0 {
			return append(dst, tmp[i:]...)
		}
	}
}

func appendValue(dst, val []byte) []byte {
	dst = append(dst, tagPresent)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(val)))
	return append(dst, val...)
}

func lowerASCII(b []byte) {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
}

// check takes the rule's cost from the request's bucket.
func (l *Limiter) check(ri int, req Request, now int64) Verdict {
	r := &l.rules[ri]
	l.keyBuf = l.appendKey(l.keyBuf[:0], r, req)
	h := hash64(l.seed, l.keyBuf)
	fp := h | 1 // never 0, which marks a free entry
	j := int((h >> 40) % ways)
	l.nameBuf = appendHex(append(l.nameBuf[:0], r.prefix...), h%r.nsets)
	cost := r.cfg.Cost
	s := &l.set
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		if attempt > 0 {
			l.count(ri, CounterCASRetries, 1)
		}
		val, cas, err := l.store.GetSharedData(l.nameBuf)
		switch {
		case err == nil:
			if !s.load(val) {
				l.count(ri, CounterGarbage, 1)
			}
		case err == ErrNotFound:
			// Envoy creates a missing key whatever cas a Set passes: a
			// fresh cas makes the creation fail, instead, if another
			// worker created the set since our Get (see freshCAS). Sets
			// are created once, while a rule's table fills.
			if cas, err = l.freshCAS(now); err != nil {
				return l.failure(ri)
			}
			s.clear()
		default:
			return l.failure(ri)
		}
		i, st, use := pick(s, fp, j, r.limit, now)
		st, ok := bucket.Take(r.limit, st, now, cost)
		if !ok {
			// Nothing to write: a refusal changes no bucket.
			return l.verdict(ri, st, false)
		}
		owner := fp
		switch use {
		case slotShared: // the entry stays its owner's, now with a foreign draw
			owner = s.fp(i)
			s.taint(i, true)
		case slotClaimed, slotEvicted: // a new owner: no foreign draws yet
			s.taint(i, false)
		}
		s.put(i, owner, st)
		err = l.store.SetSharedData(l.nameBuf, s.raw[:], cas)
		if err == ErrCASMismatch {
			continue
		}
		if err != nil {
			return l.failure(ri)
		}
		switch use {
		case slotEvicted:
			l.count(ri, CounterEvictions, 1)
		case slotShared:
			l.count(ri, CounterShared, 1)
		}
		return l.verdict(ri, st, true)
	}
	return l.exhausted(ri)
}

// exhausted refuses a request whose every compare-and-swap attempt was lost.
// Each loss means another worker wrote the set, most likely taking tokens,
// so the last read is stale and admitting would take no token: a request
// admitted so is one more than the bucket holds. This is contention, not a
// failing host, so failure_mode does not apply: the request is refused with a
// Retry-After of one second (a shadow rule only counts it), and the verdict
// names no bucket state, since none is known.
func (l *Limiter) exhausted(ri int) Verdict {
	l.count(ri, CounterCASExhausted, 1)
	l.countRefusal(ri)
	return Verdict{Rule: ri, Exhausted: true, RetryAfter: failureRetryAfter}
}

func (l *Limiter) verdict(ri int, st bucket.State, allowed bool) Verdict {
	r := &l.rules[ri]
	v := Verdict{
		Rule:      ri,
		Allowed:   allowed,
		Remaining: st.Tokens,
		Reset:     bucket.Wait(r.limit, st, r.limit.Capacity),
	}
	if allowed {
		l.count(ri, CounterAllowed, 1)
	} else {
		l.countRefusal(ri)
		v.RetryAfter = bucket.Wait(r.limit, st, r.cfg.Cost)
	}
	return v
}

// countRefusal counts a refusal by rule ri: limited, or shadow_limited for a
// rule that only observes.
func (l *Limiter) countRefusal(ri int) {
	if l.rules[ri].cfg.Shadow {
		l.count(ri, CounterShadowLimited, 1)
	} else {
		l.count(ri, CounterLimited, 1)
	}
}

// failureRetryAfter is the Retry-After of a refusal that knows no bucket
// state: by failure_mode deny, or after the compare-and-swap loop lost every
// attempt.
const failureRetryAfter = int64(1e9)

func (l *Limiter) failure(ri int) Verdict {
	l.count(ri, CounterFailureMode, 1)
	if l.cfg.FailureMode == config.FailAllow {
		return Verdict{Rule: ri, Allowed: true, Failure: true}
	}
	l.countRefusal(ri)
	return Verdict{Rule: ri, Failure: true, RetryAfter: failureRetryAfter}
}

// Undecided returns the decision failure_mode gives a request the limiter
// could not decide at all (the filter met a panic while deciding it): under
// "deny" a refusal with a Retry-After of one second, as when shared data is
// unusable, and under "allow" an admission; neither names a bucket. The
// caller counts it. The decision is reused like Decide's.
func (l *Limiter) Undecided() *Decision {
	d := &l.decision
	d.Verdicts, d.Denied = d.Verdicts[:0], false
	if l.cfg.FailureMode == config.FailDeny {
		d.Verdicts = append(d.Verdicts, Verdict{Failure: true, RetryAfter: failureRetryAfter})
		d.Denied = true
	}
	return d
}

func (l *Limiter) count(ri int, c Counter, delta int64) {
	if l.metrics != nil {
		l.metrics.Add(ri, c, delta)
	}
}
