// Benchmarks of the limiter's parts. They also build for wasip1, where they
// show what each part costs inside a wasm VM (about 10-20x native).

package limiter

import (
	"testing"

	"github.com/tokengate/tokengate/internal/bucket"
)

func newBenchLimiter(b *testing.B) *Limiter {
	cfg := mustConfig(b, `{"rules":[{"name":"a","key":["remote_address"],"capacity":1000000000,"refill":1,"interval":"1s"}]}`)
	return newLimiter(b, cfg, noAllocStore{}, nil)
}

func BenchmarkDecideNative(b *testing.B) {
	l := newBenchLimiter(b)
	r := noAllocReq{}
	var h Headers
	for b.Loop() {
		d := l.Decide(r, at(0))
		h.Reset()
		l.AppendHeaders(&h, d)
	}
}
func BenchmarkDecideOnly(b *testing.B) {
	l := newBenchLimiter(b)
	r := noAllocReq{}
	for b.Loop() {
		l.Decide(r, at(0))
	}
}
func BenchmarkEmit(b *testing.B) {
	l := newBenchLimiter(b)
	d := l.Decide(noAllocReq{}, at(0))
	var h Headers
	for b.Loop() {
		h.Reset()
		l.AppendHeaders(&h, d)
	}
}
func BenchmarkAppendKey(b *testing.B) {
	l := newBenchLimiter(b)
	r := noAllocReq{}
	for b.Loop() {
		l.keyBuf = l.appendKey(l.keyBuf[:0], &l.rules[0], r)
	}
}
func BenchmarkClientIP(b *testing.B) {
	r := noAllocReq{}
	for b.Loop() {
		clientIP(r, 0)
	}
}
func BenchmarkHash(b *testing.B) {
	k := make([]byte, 19)
	for b.Loop() {
		hash64(1, k)
	}
}
func BenchmarkStore(b *testing.B) {
	s := noAllocStore{}
	key := []byte("tokengate/test/a/3f")
	var v [setLen]byte
	for b.Loop() {
		s.GetSharedData(key)
		s.SetSharedData(key, v[:], 1)
	}
}
func BenchmarkPick(b *testing.B) {
	lim := bucket.Limit{Capacity: 100, Refill: 1, Interval: 1e9}
	var s set
	s.clear()
	for i := 0; i < ways; i++ {
		s.put(i, uint64(i+1), bucket.Full(lim, 5))
	}
	var raw [setLen]byte
	copy(raw[:], s.raw[:])
	for b.Loop() {
		s.load(raw[:])
		i, st, _ := pick(&s, 4, 0, lim, 10)
		s.put(i, 4, st)
	}
}
