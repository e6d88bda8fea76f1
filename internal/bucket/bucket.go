// Package bucket implements the token bucket as pure integer arithmetic.
//
// Time is always an argument (nanoseconds on any fixed epoch, normally Unix
// time), state is a small value that encodes to a fixed number of bytes, and
// nothing here allocates, reads a clock or talks to a host. Tokens are whole
// integers; the fraction of the next token is carried exactly, as a remainder
// in units of 1/Interval token, so refill never loses or invents tokens
// through rounding however often a bucket is updated.
package bucket

import (
	"encoding/binary"
	"math"
	"math/bits"
)

// Limit describes a bucket: it holds at most Capacity tokens (the burst) and
// gains Refill tokens every Interval nanoseconds, continuously. The zero
// value is not a valid limit; Valid reports whether a Limit can be used.
type Limit struct {
	Capacity int64 // tokens, > 0
	Refill   int64 // tokens added per Interval, > 0
	Interval int64 // nanoseconds, > 0
}

// Valid reports whether all fields are positive.
func (l Limit) Valid() bool {
	return l.Capacity > 0 && l.Refill > 0 && l.Interval > 0
}

// State is one bucket at one instant. The zero value is an empty bucket last
// updated at time 0; use Full for a new client's bucket. A State is a plain
// value: it is safe to copy, and not synchronised (callers that share one,
// such as the limiter's shared-data table, update it with compare-and-swap).
type State struct {
	Tokens int64  // whole tokens available, 0..Capacity
	Frac   uint64 // progress towards the next token, in 1/Interval token, < Interval
	Last   int64  // time of the last update, nanoseconds
}

// Full returns the bucket of a client never seen before: full at now.
func Full(l Limit, now int64) State {
	return State{Tokens: l.Capacity, Last: now}
}

// Advance refills s up to now and returns the result. A now earlier than
// s.Last (a clock that went backwards, or a worker whose clock lags another)
// is clamped to s.Last: no refill, and Last does not move back.
func Advance(l Limit, s State, now int64) State {
	if now <= s.Last {
		return s
	}
	if s.Tokens >= l.Capacity {
		return State{Tokens: l.Capacity, Last: now}
	}
	elapsed := uint64(now) - uint64(s.Last) // exact: now > Last
	hi, lo := mul(elapsed, uint64(l.Refill))
	lo, carry := bits.Add64(lo, s.Frac, 0)
	hi += carry
	if hi >= uint64(l.Interval) { // more than 2^64 tokens: certainly full
		return State{Tokens: l.Capacity, Last: now}
	}
	gained, frac := div(hi, lo, uint64(l.Interval))
	if gained >= uint64(l.Capacity-s.Tokens) {
		return State{Tokens: l.Capacity, Last: now}
	}
	return State{Tokens: s.Tokens + int64(gained), Frac: frac, Last: now}
}

// Take refills s up to now and then takes cost tokens if the bucket holds
// that many. It returns the new state and whether the tokens were taken; a
// refused take changes nothing but the refill.
func Take(l Limit, s State, now, cost int64) (State, bool) {
	s = Advance(l, s, now)
	if s.Tokens < cost {
		return s, false
	}
	s.Tokens -= cost
	return s, true
}

// IsFull reports whether s, refilled to now, is a full bucket: such a bucket
// cannot be told from a new one, so forgetting it loses nothing.
func IsFull(l Limit, s State, now int64) bool {
	return Advance(l, s, now).Tokens >= l.Capacity
}

// Wait returns how long, in nanoseconds, until s holds n tokens, given that s
// has already been advanced to the present. It is 0 when s holds n tokens
// already and math.MaxInt64 when n exceeds the capacity or the wait overflows.
func Wait(l Limit, s State, n int64) int64 {
	if s.Tokens >= n {
		return 0
	}
	if n > l.Capacity {
		return math.MaxInt64
	}
	// The missing tokens, in 1/Interval units, less the fraction gathered.
	hi, lo := mul(uint64(n-s.Tokens), uint64(l.Interval))
	lo, borrow := bits.Sub64(lo, s.Frac, 0)
	hi -= borrow
	if hi >= uint64(l.Refill) {
		return math.MaxInt64
	}
	q, r := div(hi, lo, uint64(l.Refill))
	if r != 0 {
		q++
	}
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(q)
}

// mul returns the 128-bit product of a and b. wasm has no 64x64->128
// multiply, and math/bits emulates one with four multiplications: when both
// fit in 32 bits, as times and rates usually do, one native multiply is
// exact.
func mul(a, b uint64) (hi, lo uint64) {
	if (a|b)>>32 == 0 {
		return 0, a * b
	}
	return bits.Mul64(a, b)
}

// div divides the 128-bit hi:lo by d (hi < d). With hi zero it is one native
// 64-bit division instead of math/bits' long division.
func div(hi, lo, d uint64) (q, r uint64) {
	if hi == 0 {
		return lo / d, lo % d
	}
	return bits.Div64(hi, lo, d)
}

// Window returns the time, in nanoseconds, an empty bucket takes to fill:
// Capacity*Interval/Refill rounded up, math.MaxInt64 on overflow.
func Window(l Limit) int64 {
	return Wait(l, State{}, l.Capacity)
}

// EncodedLen is the size of an encoded State in bytes.
const EncodedLen = 24

// Encode writes s into the first EncodedLen bytes of dst (little endian).
// dst must be at least EncodedLen long.
func Encode(dst []byte, s State) {
	_ = dst[EncodedLen-1]
	binary.LittleEndian.PutUint64(dst[0:], uint64(s.Tokens))
	binary.LittleEndian.PutUint64(dst[8:], s.Frac)
	binary.LittleEndian.PutUint64(dst[16:], uint64(s.Last))
}

// Decode reads a State written by Encode for limit l. It reports false for
// bytes no bucket can hold (too short, negative tokens or time): garbage, such
// as another plugin's data, that the caller should replace. A state written
// under an older, larger limit is clamped to l rather than rejected, so a
// change of a rule's limit keeps what clients have spent. (A change of the
// plugin's slots is another matter: it moves clients to other keys.)
func Decode(src []byte, l Limit) (State, bool) {
	if len(src) < EncodedLen {
		return State{}, false
	}
	s := State{
		Tokens: int64(binary.LittleEndian.Uint64(src[0:])),
		Frac:   binary.LittleEndian.Uint64(src[8:]),
		Last:   int64(binary.LittleEndian.Uint64(src[16:])),
	}
	if s.Tokens < 0 || s.Last < 0 {
		return State{}, false
	}
	if s.Tokens >= l.Capacity {
		s.Tokens, s.Frac = l.Capacity, 0
	}
	if s.Frac >= uint64(l.Interval) {
		s.Frac = 0
	}
	return s, true
}
