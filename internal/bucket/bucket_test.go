package bucket

import (
	"math"
	"math/bits"
	"testing"
	"time"
)

const sec = int64(time.Second)

// TestTakeTimeline walks one bucket through a timeline: burst, refusal,
// partial refill carried exactly across updates, cap at capacity.
func TestTakeTimeline(t *testing.T) {
	l := Limit{Capacity: 3, Refill: 1, Interval: sec} // 1 token per second, burst 3
	steps := []struct {
		at            int64
		cost          int64
		wantAllowed   bool
		wantRemaining int64
		wantWait      int64 // Wait for cost tokens after the step
	}{
		{at: 0, cost: 1, wantAllowed: true, wantRemaining: 2},
		{at: 0, cost: 1, wantAllowed: true, wantRemaining: 1},
		{at: 0, cost: 1, wantAllowed: true, wantRemaining: 0, wantWait: sec},
		{at: 0, cost: 1, wantAllowed: false, wantRemaining: 0, wantWait: sec},
		{at: sec / 2, cost: 1, wantAllowed: false, wantRemaining: 0, wantWait: sec / 2},
		{at: sec/2 + sec/4, cost: 1, wantAllowed: false, wantRemaining: 0, wantWait: sec / 4},
		{at: sec, cost: 1, wantAllowed: true, wantRemaining: 0, wantWait: sec},
		{at: 3 * sec, cost: 2, wantAllowed: true, wantRemaining: 0, wantWait: 2 * sec},
		{at: 100 * sec, cost: 3, wantAllowed: true, wantRemaining: 0, wantWait: 3 * sec},
		{at: 100 * sec, cost: 4, wantAllowed: false, wantRemaining: 0, wantWait: math.MaxInt64},
	}
	s := Full(l, 0)
	for i, st := range steps {
		var ok bool
		s, ok = Take(l, s, st.at, st.cost)
		if ok != st.wantAllowed || s.Tokens != st.wantRemaining {
			t.Fatalf("step %d (at %d, cost %d): allowed=%v remaining=%d, want %v %d",
				i, st.at, st.cost, ok, s.Tokens, st.wantAllowed, st.wantRemaining)
		}
		if w := Wait(l, s, st.cost); w != st.wantWait {
			t.Fatalf("step %d: Wait=%d, want %d", i, w, st.wantWait)
		}
	}
}

// TestFractionCarried pins that frequent updates do not lose partial tokens:
// 3 tokens per 1s observed every 1ms must give exactly 3 tokens per second.
func TestFractionCarried(t *testing.T) {
	l := Limit{Capacity: 1000, Refill: 3, Interval: sec}
	s := State{Tokens: 0, Last: 0}
	for now := int64(0); now <= 10*sec; now += int64(time.Millisecond) {
		s = Advance(l, s, now)
	}
	if s.Tokens != 30 || s.Frac != 0 {
		t.Fatalf("after 10s at 3/s: tokens=%d frac=%d, want 30 0", s.Tokens, s.Frac)
	}
}

func TestClockBackwardsClamped(t *testing.T) {
	l := Limit{Capacity: 10, Refill: 10, Interval: sec}
	s := State{Tokens: 0, Last: 5 * sec}
	back := Advance(l, s, 2*sec)
	if back != s {
		t.Fatalf("clock went back: state changed to %+v", back)
	}
	// Coming back to the old time refills nothing; past it, refill resumes
	// from the last time seen, not from the backwards reading.
	if got := Advance(l, back, 5*sec).Tokens; got != 0 {
		t.Fatalf("tokens at old time = %d, want 0", got)
	}
	if got := Advance(l, back, 5*sec+sec/2).Tokens; got != 5 {
		t.Fatalf("tokens half a second later = %d, want 5", got)
	}
}

func TestOverflowSaturates(t *testing.T) {
	tests := []struct {
		name string
		l    Limit
		s    State
		now  int64
	}{
		{"huge refill", Limit{Capacity: math.MaxInt64, Refill: 1 << 40, Interval: int64(time.Millisecond)}, State{}, math.MaxInt64},
		{"years later", Limit{Capacity: 100, Refill: math.MaxInt64, Interval: 1}, State{Last: 1}, math.MaxInt64},
		{"near capacity", Limit{Capacity: math.MaxInt64, Refill: math.MaxInt64, Interval: 1}, State{Tokens: math.MaxInt64 - 1}, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Advance(tt.l, tt.s, tt.now)
			if s.Tokens != tt.l.Capacity || s.Frac != 0 || s.Last != tt.now {
				t.Fatalf("got %+v, want full at %d", s, tt.now)
			}
		})
	}
	// Waits that do not fit report MaxInt64 instead of wrapping.
	l := Limit{Capacity: math.MaxInt64, Refill: 1, Interval: math.MaxInt64}
	if w := Wait(l, State{}, math.MaxInt64); w != math.MaxInt64 {
		t.Fatalf("Wait overflow = %d, want MaxInt64", w)
	}
	if w := Window(Limit{Capacity: 100, Refill: 10, Interval: sec}); w != 10*sec {
		t.Fatalf("Window = %d, want 10s", w)
	}
}

func TestIsFull(t *testing.T) {
	l := Limit{Capacity: 2, Refill: 1, Interval: sec}
	s, _ := Take(l, Full(l, 0), 0, 1)
	if IsFull(l, s, sec-1) {
		t.Fatal("full 1ns before the token is back")
	}
	if !IsFull(l, s, sec) {
		t.Fatal("not full once the token is back")
	}
}

func TestEncodeDecode(t *testing.T) {
	l := Limit{Capacity: 50, Refill: 7, Interval: sec}
	want := State{Tokens: 17, Frac: 12345, Last: 1_700_000_000 * sec}
	var b [EncodedLen]byte
	Encode(b[:], want)
	got, ok := Decode(b[:], l)
	if !ok || got != want {
		t.Fatalf("round trip: %+v %v, want %+v", got, ok, want)
	}
	if _, ok := Decode(b[:EncodedLen-1], l); ok {
		t.Fatal("short input decoded")
	}
	Encode(b[:], State{Tokens: -1})
	if _, ok := Decode(b[:], l); ok {
		t.Fatal("negative tokens decoded")
	}
	// A state from a larger limit is clamped, not thrown away.
	Encode(b[:], State{Tokens: 80, Frac: 3, Last: 9})
	if got, ok := Decode(b[:], l); !ok || got.Tokens != 50 || got.Frac != 0 {
		t.Fatalf("clamp: %+v %v", got, ok)
	}
}

func TestTakeAllocatesNothing(t *testing.T) {
	l := Limit{Capacity: 100, Refill: 10, Interval: sec}
	s := Full(l, 0)
	var buf [EncodedLen]byte
	now := int64(0)
	allocs := testing.AllocsPerRun(1000, func() {
		now += 1000
		s, _ = Take(l, s, now, 1)
		Encode(buf[:], s)
		s, _ = Decode(buf[:], l)
	})
	if allocs != 0 {
		t.Fatalf("Take+Encode+Decode allocate %v times per run, want 0", allocs)
	}
}

// FuzzDecodeTake feeds arbitrary bytes and times to the decoder and the
// arithmetic: no panic, and a decoded state always stays within its limit.
func FuzzDecodeTake(f *testing.F) {
	var b [EncodedLen]byte
	Encode(b[:], State{Tokens: 5, Frac: 1, Last: 100})
	f.Add(b[:], int64(10), int64(3), int64(1_000_000), int64(200), int64(1))
	f.Add([]byte{0xff, 0xff}, int64(1), int64(1), int64(1), int64(-5), int64(1))
	f.Fuzz(func(t *testing.T, data []byte, capacity, refill, interval, now, cost int64) {
		l := Limit{Capacity: capacity, Refill: refill, Interval: interval}
		if !l.Valid() || cost <= 0 || cost > capacity {
			return
		}
		s, ok := Decode(data, l)
		if !ok {
			return
		}
		s, _ = Take(l, s, now, cost)
		if s.Tokens < 0 || s.Tokens > l.Capacity || s.Frac >= uint64(l.Interval) {
			t.Fatalf("state out of range: %+v for %+v", s, l)
		}
		if w := Wait(l, s, cost); w < 0 {
			t.Fatalf("negative wait %d", w)
		}
	})
}

func BenchmarkTake(b *testing.B) {
	l := Limit{Capacity: 100, Refill: 10, Interval: sec}
	s := Full(l, 0)
	var buf [EncodedLen]byte
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s, _ = Take(l, s, int64(i)*1000, 1)
		Encode(buf[:], s)
	}
}

// FuzzMulDiv holds the fast paths of mul and div to math/bits' results.
func FuzzMulDiv(f *testing.F) {
	f.Add(uint64(3), uint64(1e9), uint64(7))
	f.Add(uint64(1)<<32, uint64(5), uint64(1))
	f.Add(uint64(math.MaxUint32), uint64(math.MaxUint32), uint64(math.MaxUint64))
	f.Fuzz(func(t *testing.T, a, b, d uint64) {
		hi, lo := mul(a, b)
		if wantHi, wantLo := bits.Mul64(a, b); hi != wantHi || lo != wantLo {
			t.Fatalf("mul(%d, %d) = %d:%d, want %d:%d", a, b, hi, lo, wantHi, wantLo)
		}
		if d == 0 || hi >= d {
			return
		}
		q, r := div(hi, lo, d)
		if wantQ, wantR := bits.Div64(hi, lo, d); q != wantQ || r != wantR {
			t.Fatalf("div(%d:%d, %d) = %d r %d, want %d r %d", hi, lo, d, q, r, wantQ, wantR)
		}
	})
}
