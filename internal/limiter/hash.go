package limiter

import (
	"encoding/binary"
	"math/bits"
	"unsafe"
)

// hash64 is a seeded 64-bit hash for client keys: 8 bytes at a time, each
// word folded in with a 128-bit multiply, then a final avalanche. It is not
// cryptographic; the seed, chosen at random once per shared-data namespace,
// keeps outsiders from aiming keys at one slot.
func hash64(seed uint64, b []byte) uint64 {
	const (
		k0 = 0x9e3779b97f4a7c15
		k1 = 0xbf58476d1ce4e5b9
		k2 = 0x94d049bb133111eb
	)
	h := seed ^ k0 ^ uint64(len(b))*k1
	for len(b) >= 8 {
		hi, lo := bits.Mul64(h^binary.LittleEndian.Uint64(b), k1)
		h = hi ^ lo
		b = b[8:]
	}
	if len(b) > 0 {
		var tail [8]byte
		copy(tail[:], b)
		hi, lo := bits.Mul64(h^binary.LittleEndian.Uint64(tail[:])^k2, k1)
		h = hi ^ lo
	}
	h ^= h >> 31
	h *= k2
	h ^= h >> 29
	return h
}

// bytesToString views b as a string without copying. b must not change while
// the string is in use.
func bytesToString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}
