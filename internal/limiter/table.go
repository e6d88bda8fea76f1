package limiter

import (
	"encoding/binary"
	"errors"

	"github.com/tokengate/tokengate/internal/bucket"
)

// Store is proxy-wasm shared data of one vm_id, as the limiter uses it. It
// follows Envoy's rules: Get of a missing key gives ErrNotFound; Set on an
// existing key with cas != 0 that differs from the stored one gives
// ErrCASMismatch; Set on a missing key creates it whatever cas was passed;
// every successful Set stores a fresh cas from one process-wide counter
// that only grows. Values returned by Get are only read before the next call.
// ErrNotFound and ErrCASMismatch are returned as they are, never wrapped:
// the request path compares them with ==, which costs nothing in a wasm VM
// where errors.Is does not.
type Store interface {
	GetSharedData(key []byte) (value []byte, cas uint32, err error)
	SetSharedData(key, value []byte, cas uint32) error
}

// Errors a Store returns for the two outcomes the limiter acts on. Any other
// error ends the update in the configured failure mode.
var (
	ErrNotFound    = errors.New("limiter: shared-data key not found")
	ErrCASMismatch = errors.New("limiter: shared-data cas mismatch")
)

// The shared-data table of one rule is a fixed array of sets; each set is
// one shared-data key holding `ways` entries, so the table never holds more
// than ceil(slots/ways) keys, however many clients come. An entry is a key
// fingerprint and a bucket. A set value:
//
//	[0:4]  magic "tgs1"
//	[4]    ways
//	[5]    taint bits: entry i has been drawn from by a client that does not own it
//	[6:8]  zero
//	ways x (u64 fingerprint, 0 = free; bucket.EncodedLen bytes of bucket.State)
const (
	ways         = 4
	setHeaderLen = 8
	entryLen     = 8 + bucket.EncodedLen
	setLen       = setHeaderLen + ways*entryLen

	// maxCASAttempts bounds the read-modify-write loop on one set. Each
	// failed attempt means another worker updated the set in between. With
	// N workers on one hot set only one wins each round, so a loser may
	// lose N-1 rounds in a row or more; when it has lost them all, the
	// request is refused (never admitted without a token) and counted in
	// cas_exhausted, whatever failure_mode says.
	maxCASAttempts = 16
)

var setMagic = [4]byte{'t', 'g', 's', '1'}

// set is one set value being read and edited in place: entries are decoded
// only when needed, and a write changes only the entry it concerns. The zero
// value is not a set; use load or clear.
type set struct {
	raw [setLen]byte
}

// clear makes s an empty set.
func (s *set) clear() {
	s.raw = [setLen]byte{}
	copy(s.raw[0:4], setMagic[:])
	s.raw[4] = ways
}

// load copies the stored value b into s. It reports false, leaving s empty,
// for bytes that are not a set of ours (garbage: another plugin's data under
// our key, or an older layout).
func (s *set) load(b []byte) bool {
	if len(b) != setLen || [4]byte(b[0:4]) != setMagic || b[4] != ways {
		s.clear()
		return false
	}
	copy(s.raw[:], b)
	return true
}

func (s *set) fp(i int) uint64 {
	return binary.LittleEndian.Uint64(s.raw[setHeaderLen+i*entryLen:])
}

// state decodes entry i's bucket; false for a free entry or an invalid
// bucket (which counts as free: garbage is reset, never trusted).
func (s *set) state(i int, l bucket.Limit) (bucket.State, bool) {
	if s.fp(i) == 0 {
		return bucket.State{}, false
	}
	return bucket.Decode(s.raw[setHeaderLen+i*entryLen+8:], l)
}

func (s *set) put(i int, fp uint64, st bucket.State) {
	off := setHeaderLen + i*entryLen
	binary.LittleEndian.PutUint64(s.raw[off:], fp)
	bucket.Encode(s.raw[off+8:], st)
}

func (s *set) tainted(i int) bool { return s.raw[5]&(1<<i) != 0 }

func (s *set) taint(i int, on bool) {
	if on {
		s.raw[5] |= 1 << i
	} else {
		s.raw[5] &^= 1 << i
	}
}

// slotUse says how a request's bucket was found in its set.
type slotUse uint8

const (
	slotOwn     slotUse = iota // the client's own entry
	slotClaimed                // a free entry, or a full one, taken for the client
	slotEvicted                // like slotClaimed, but another client's full bucket was forgotten
	slotShared                 // the set was full of non-full buckets: shared with another client
)

// pick finds the bucket for fingerprint fp in s at now, and where it came
// from. j is the client's fixed fallback entry.
//
// The rule that keeps this from ever over-admitting: only full buckets are
// forgotten (a full bucket cannot be told from a new one); a client that
// finds no room draws from entry j, always the same one for that client,
// and marks it tainted; a client that later gets an entry of its own starts
// from entry j's level if j is tainted (it may have drawn from j), else full.
// A tainted entry's level is never above the true level of any client that
// shared it, so a client is never given more than its own bucket would hold.
// The price is stricter limits for the clients of a full set.
func pick(s *set, fp uint64, j int, l bucket.Limit, now int64) (int, bucket.State, slotUse) {
	for i := 0; i < ways; i++ {
		if s.fp(i) == fp {
			if st, ok := s.state(i, l); ok {
				return i, st, slotOwn
			}
			return i, bucket.Full(l, now), slotClaimed // an invalid bucket is reset
		}
	}
	k, full := -1, -1
	for i := 0; i < ways; i++ {
		st, ok := s.state(i, l)
		if !ok {
			k = i
			break
		}
		if full < 0 && bucket.IsFull(l, st, now) {
			full = i
		}
	}
	use := slotClaimed
	if k < 0 && full >= 0 {
		k, use = full, slotEvicted
	}
	if k < 0 {
		st, _ := s.state(j, l)
		return j, st, slotShared
	}
	start := bucket.Full(l, now)
	if j != k && s.tainted(j) {
		if st, ok := s.state(j, l); ok {
			start = bucket.Advance(l, st, now)
		}
	}
	return k, start, use
}
