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

// Emitter receives rendered headers. value is only valid during the call.
type Emitter interface {
	Emit(name string, value []byte)
}

// Seconds converts nanoseconds to whole seconds, rounding up, as the
// delta-seconds of Retry-After and the draft's w and t parameters need.
func Seconds(ns int64) int64 {
	if ns <= 0 {
		return 0
	}
	return ns/1e9 + min(ns%1e9, 1)
}

// policyItem renders one RateLimit-Policy list member of the IETF httpapi
// draft: "name";q=<capacity>;w=<seconds for an empty bucket to refill>.
func policyItem(r *config.Rule) string {
	w := max(Seconds(bucket.Window(r.Limit())), 1)
	return `"` + r.Name + `";q=` + strconv.FormatInt(r.Capacity, 10) + ";w=" + strconv.FormatInt(w, 10)
}

// EmitHeaders renders the rate-limit headers of d (as the configuration's
// header mode asks) and, when d is a rejection, Retry-After. buf is scratch
// space, returned for reuse. Verdicts decided by failure_mode carry no
// bucket and are left out of the rate-limit headers.
func (l *Limiter) EmitHeaders(e Emitter, d *Decision, buf []byte) []byte {
	if d.Denied {
		after := max(Seconds(d.Verdicts[d.Deny].RetryAfter), 1)
		buf = appendInt(buf[:0], after)
		e.Emit(HeaderRetryAfter, buf)
	}
	mode := l.cfg.Headers
	if mode.Draft() {
		buf = buf[:0]
		for _, v := range d.Verdicts {
			if !v.Failure {
				buf = appendSep(buf)
				buf = append(buf, l.rules[v.Rule].policy...)
			}
		}
		if len(buf) > 0 {
			e.Emit(HeaderPolicy, buf)
			buf = buf[:0]
			for _, v := range d.Verdicts {
				if !v.Failure {
					buf = appendSep(buf)
					buf = append(buf, l.rules[v.Rule].remainingPrefix...)
					buf = appendInt(buf, v.Remaining)
					buf = append(buf, ";t="...)
					buf = appendInt(buf, Seconds(v.Reset))
				}
			}
			e.Emit(HeaderRateLimit, buf)
		}
	}
	if mode.Legacy() {
		if v, ok := tightest(d); ok {
			buf = appendInt(buf[:0], l.rules[v.Rule].cfg.Capacity)
			e.Emit(HeaderLegacyLimit, buf)
			buf = appendInt(buf[:0], v.Remaining)
			e.Emit(HeaderLegacyRemaining, buf)
			buf = appendInt(buf[:0], Seconds(v.Reset))
			e.Emit(HeaderLegacyReset, buf)
		}
	}
	return buf
}

// appendInt appends n in decimal; strconv's general path costs several times
// more inside a wasm VM.
func appendInt(dst []byte, n int64) []byte {
	if n < 0 {
		return strconv.AppendInt(dst, n, 10)
	}
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return append(dst, tmp[i:]...)
		}
	}
}

func appendSep(b []byte) []byte {
	if len(b) > 0 {
		return append(b, ", "...)
	}
	return b
}

// tightest picks the verdict the single-policy legacy headers describe: the
// rejecting one, else the one with the fewest tokens left.
func tightest(d *Decision) (Verdict, bool) {
	if d.Denied && !d.Verdicts[d.Deny].Failure {
		return d.Verdicts[d.Deny], true
	}
	best, found := Verdict{Remaining: math.MaxInt64}, false
	for _, v := range d.Verdicts {
		if !v.Failure && (v.Remaining < best.Remaining || v.Remaining == best.Remaining && v.Reset > best.Reset) {
			best, found = v, true
		}
	}
	return best, found
}
