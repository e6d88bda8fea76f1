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
type Store interface {
	GetSharedData(key []byte) (value []byte, cas uint32, err error)
	SetSharedData(key, value []byte, cas uint32) error
}

// Errors a Store returns for the two outcomes the limiter acts on. Any other
// error ends the update in the configured failure mode.
var (
	ErrNotFound    = errors.New("shared data: key not found")
	ErrCASMismatch = errors.New("shared data: cas mismatch")
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
	// failed attempt means another worker updated the set in between, so
	// the loop ends quickly unless contention is extreme; it then ends in
	// the configured failure mode and is counted.
	maxCASAttempts = 16
)

var setMagic = [4]byte{'t', 'g', 's', '1'}

type entry struct {
	fp    uint64
	state bucket.State
}

// set is one decoded set value.
type set struct {
	entries [ways]entry
	taint   uint8
}

// decodeSet reads a set value; it reports false for bytes that are not one
// (garbage: another plugin's data under our key, or an older layout).
// Entries whose bucket is invalid are freed and counted in garbage.
func decodeSet(b []byte, l bucket.Limit, s *set) (ok bool, garbage int) {
	*s = set{}
	if len(b) != setLen || [4]byte(b[0:4]) != setMagic || b[4] != ways {
		return false, 0
	}
	s.taint = b[5]
	for i := range s.entries {
		e := b[setHeaderLen+i*entryLen:]
		fp := binary.LittleEndian.Uint64(e)
		if fp == 0 {
			continue
		}
		st, ok := bucket.Decode(e[8:], l)
		if !ok {
			garbage++
			s.taint &^= 1 << i
			continue
		}
		s.entries[i] = entry{fp: fp, state: st}
	}
	return true, garbage
}

func encodeSet(dst *[setLen]byte, s *set) {
	copy(dst[0:4], setMagic[:])
	dst[4], dst[5], dst[6], dst[7] = ways, s.taint, 0, 0
	for i, e := range s.entries {
		off := setHeaderLen + i*entryLen
		binary.LittleEndian.PutUint64(dst[off:], e.fp)
		bucket.Encode(dst[off+8:], e.state)
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
	for i := range s.entries {
		if s.entries[i].fp == fp {
			return i, s.entries[i].state, slotOwn
		}
	}
	k := -1
	for i := range s.entries {
		if s.entries[i].fp == 0 {
			k = i
			break
		}
	}
	use := slotClaimed
	if k < 0 {
		for i := range s.entries {
			if bucket.IsFull(l, s.entries[i].state, now) {
				k, use = i, slotEvicted
				break
			}
		}
	}
	if k < 0 {
		return j, s.entries[j].state, slotShared
	}
	start := bucket.Full(l, now)
	if s.taint&(1<<j) != 0 && j != k && s.entries[j].fp != 0 {
		start = bucket.Advance(l, s.entries[j].state, now)
	}
	return k, start, use
}
