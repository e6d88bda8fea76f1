package limiter

import (
	"encoding/binary"
	"math/bits"
	"unsafe"
)

// hash64 is a seeded 64-bit hash for client keys, 8 bytes a round, built
// from native 64-bit operations only (multiply, rotate, xor): wasm has no
// 64x64->128 multiply, and math/bits emulates one slowly. It is not
// cryptographic; the seed, chosen at random once per shared-data namespace,
// keeps outsiders from aiming keys at one slot.
func hash64(seed uint64, b []byte) uint64 {
	const (
		p1 = 0x9e3779b185ebca87
		p2 = 0xc2b2ae3d27d4eb4f
		p3 = 0x165667b19e3779f9
	)
	h := seed + p3 + uint64(len(b))*p1
	for len(b) >= 8 {
		k := binary.LittleEndian.Uint64(b) * p2
		h ^= bits.RotateLeft64(k, 31) * p1
		h = bits.RotateLeft64(h, 27)*p1 + p3
		b = b[8:]
	}
	if len(b) > 0 {
		var tail [8]byte
		copy(tail[:], b)
		k := binary.LittleEndian.Uint64(tail[:]) * p2
		h ^= bits.RotateLeft64(k, 31) * p1
		h = bits.RotateLeft64(h, 27)*p1 + p3
	}
	h ^= h >> 33
	h *= p2
	h ^= h >> 29
	h *= p3
	h ^= h >> 32
	return h
}

// bytesToString views b as a string without copying. b must not change while
// the string is in use.
func bytesToString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}
