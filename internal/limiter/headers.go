package limiter

import (
	"math"
	"strconv"

	"github.com/tokengate/tokengate/internal/bucket"
	"github.com/tokengate/tokengate/internal/config"
)

// Header names, lower case as Envoy hands them around.
const (
	HeaderRetryAfter      = "retry-after"
	HeaderPolicy          = "ratelimit-policy"
	HeaderRateLimit       = "ratelimit"
	HeaderLegacyLimit     = "x-ratelimit-limit"
	HeaderLegacyRemaining = "x-ratelimit-remaining"
	HeaderLegacyReset     = "x-ratelimit-reset"
)

// Headers is a list of rendered headers, kept in one buffer so that a warm
// list allocates nothing: render a decision's headers once into it, then
// hand them to the host as often as needed. The zero value is an empty list.
// A Headers is not safe for concurrent use.
type Headers struct {
	names []string
	ends  []int // end of each value in buf
	buf   []byte
}

// Reset empties the list, keeping its memory.
func (h *Headers) Reset() { h.names, h.ends, h.buf = h.names[:0], h.ends[:0], h.buf[:0] }

// Len returns the number of headers.
func (h *Headers) Len() int { return len(h.names) }

// At returns header i. value aliases the list: it is valid until the next
// change of h.
func (h *Headers) At(i int) (name string, value []byte) {
	start := 0
	if i > 0 {
		start = h.ends[i-1]
	}
	return h.names[i], h.buf[start:h.ends[i]:h.ends[i]]
}

// Add appends a header.
func (h *Headers) Add(name string, value string) {
	h.buf = append(h.buf, value...)
	h.end(name)
}

// end closes the value written at the end of buf as header name's.
func (h *Headers) end(name string) {
	h.names = append(h.names, name)
	h.ends = append(h.ends, len(h.buf))
}

// retryAfter adds Retry-After: ns in whole seconds, rounded up, at least 1.
func (h *Headers) retryAfter(ns int64) {
	h.buf = appendInt(h.buf, max(Seconds(ns), 1))
	h.end(HeaderRetryAfter)
}

// legacy adds the X-RateLimit-* headers of one limit: its size, what is
// left, and the nanoseconds until it is whole again (sent in seconds).
func (h *Headers) legacy(limit, remaining, reset int64) {
	h.buf = appendInt(h.buf, limit)
	h.end(HeaderLegacyLimit)
	h.buf = appendInt(h.buf, remaining)
	h.end(HeaderLegacyRemaining)
	h.buf = appendInt(h.buf, Seconds(reset))
	h.end(HeaderLegacyReset)
}

// Seconds converts nanoseconds to whole seconds, rounding up, as the
// delta-seconds of Retry-After and the draft's w and t parameters need.
func Seconds(ns int64) int64 {
	if ns <= 0 {
		return 0
	}
	return ns/1e9 + min(ns%1e9, 1)
}

// maxSFInteger is the largest Structured Field integer (RFC 8941 3.3.1: at
// most 15 digits), which the draft headers' values are: a larger one makes a
// strict client drop the whole field, so q and r are capped to it. (w and t
// are seconds, below 10^10 however large the limit.)
const maxSFInteger = 999_999_999_999_999

// policyItem renders one RateLimit-Policy list member of the IETF httpapi
// draft: "name";q=<capacity>;w=<seconds for an empty bucket to refill>.
func policyItem(r *config.Rule) string {
	w := max(Seconds(bucket.Window(r.Limit())), 1)
	return `"` + r.Name + `";q=` + strconv.FormatInt(min(r.Capacity, maxSFInteger), 10) + ";w=" + strconv.FormatInt(w, 10)
}

// AppendHeaders renders the rate-limit headers of d into h (as the
// configuration's header mode asks) and, when d is a refusal, Retry-After
// first. Verdicts that know no bucket state (decided by failure_mode, or
// refused after the compare-and-swap loop lost every attempt) are left out.
// The draft headers name each rule, shadow ones included, so a client can
// tell them apart; the legacy headers describe one unnamed limit, which
// must be one that is enforced: shadow rules never drive that choice.
func (l *Limiter) AppendHeaders(h *Headers, d *Decision) {
	if d.Denied {
		h.retryAfter(d.Verdicts[len(d.Verdicts)-1].RetryAfter)
	}
	mode := l.cfg.Headers
	if mode.Draft() {
		if policy := l.policy(d); len(policy) > 0 {
			h.buf = append(h.buf, policy...)
			h.end(HeaderPolicy)
			start := len(h.buf)
			for _, v := range d.Verdicts {
				if v.known() {
					if len(h.buf) > start {
						h.buf = append(h.buf, ", "...)
					}
					h.buf = l.appendItem(h.buf, v)
				}
			}
			h.end(HeaderRateLimit)
		}
	}
	if mode.Legacy() {
		if v, ok := l.tightest(d); ok {
			h.legacy(l.rules[v.Rule].cfg.Capacity, v.Remaining, v.Reset)
		}
	}
}

// appendItem appends the RateLimit list member of verdict v, which knows its
// rule's state: "name";r=<remaining>;t=<seconds until reset>.
func (l *Limiter) appendItem(dst []byte, v Verdict) []byte {
	dst = append(dst, l.rules[v.Rule].remainingPrefix...)
	dst = appendInt(dst, min(v.Remaining, maxSFInteger))
	dst = append(dst, ";t="...)
	return appendInt(dst, Seconds(v.Reset))
}

// policy returns the RateLimit-Policy value of the rules whose buckets
// decided d, or nil when there are none. It depends only on which rules those are, so it is
// rendered again only when that set changes, into a buffer the limiter keeps:
// requests that keep matching the same rules reuse it as it is.
func (l *Limiter) policy(d *Decision) []byte {
	var set uint64 // config.MaxRules <= 64
	for _, v := range d.Verdicts {
		if v.known() {
			set |= 1 << v.Rule
		}
	}
	if set != l.policySet || !l.policyOK {
		l.policyBuf = l.policyBuf[:0]
		for _, v := range d.Verdicts {
			if set&(1<<v.Rule) != 0 {
				if len(l.policyBuf) > 0 {
					l.policyBuf = append(l.policyBuf, ", "...)
				}
				l.policyBuf = append(l.policyBuf, l.rules[v.Rule].policy...)
			}
		}
		l.policySet, l.policyOK = set, true
	}
	return l.policyBuf
}

// known reports whether v carries its bucket's state (Remaining, Reset).
func (v Verdict) known() bool { return !v.Failure && !v.Exhausted }

// appendInt appends n in decimal, two digits per division: strconv's
// general path costs several times more inside a wasm VM.
func appendInt(dst []byte, n int64) []byte {
	if n < 0 {
		return strconv.AppendInt(dst, n, 10)
	}
	const pairs = "00010203040506070809101112131415161718192021222324252627282930313233343536373839" +
		"40414243444546474849505152535455565758596061626364656667686970717273747576777879" +
		"8081828384858687888990919293949596979899"
	var tmp [20]byte
	i := len(tmp)
	for n >= 100 {
		q := n / 100
		r := n - q*100
		i -= 2
		tmp[i], tmp[i+1] = pairs[2*r], pairs[2*r+1]
		n = q
	}
	if n >= 10 {
		i -= 2
		tmp[i], tmp[i+1] = pairs[2*n], pairs[2*n+1]
	} else {
		i--
		tmp[i] = byte('0' + n)
	}
	return append(dst, tmp[i:]...)
}

// tightest picks the verdict the single-policy legacy headers describe: the
// refusing one, else, among the enforced rules decided by a bucket, the one
// with the fewest tokens left (the later reset on a tie).
func (l *Limiter) tightest(d *Decision) (Verdict, bool) {
	if d.Denied {
		if v := d.Verdicts[len(d.Verdicts)-1]; v.known() {
			return v, true
		}
	}
	best, found := Verdict{Remaining: math.MaxInt64}, false
	for _, v := range d.Verdicts {
		if v.known() && !l.rules[v.Rule].cfg.Shadow && (v.Remaining < best.Remaining || v.Remaining == best.Remaining && v.Reset > best.Reset) {
			best, found = v, true
		}
	}
	return best, found
}
