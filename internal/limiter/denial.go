package limiter

import "encoding/binary"

// The denial cache of a global rule: like the bucket table, a fixed array
// of sets, one shared-data key each ("tokengate/<plugin>/<rule>/deny/<hex
// index>"), ceil(cache_slots/4) keys at most, addressed by the same seeded
// hash of the client key. An entry is a fingerprint and the time until
// which the RLS refuses that client. A set value:
//
//	[0:4] magic "tgd1"
//	[4]   ways
//	[5:8] zero
//	ways x (u64 fingerprint, 0 = free; i64 until, Unix nanoseconds)
//
// Unlike buckets, losing an entry is harmless: the next request asks the RLS
// again, which is the truth. So a full set forgets the entry that expires
// first, a lost compare-and-swap race is not retried, and garbage is simply
// overwritten.
const (
	denialEntryLen = 16
	denialSetLen   = setHeaderLen + ways*denialEntryLen
)

var denialMagic = [4]byte{'t', 'g', 'd', '1'}

type denialSet struct {
	raw [denialSetLen]byte
}

// load copies b into s and reports whether it is a denial set; anything
// else (nil, garbage) leaves s an empty set.
func (s *denialSet) load(b []byte) bool {
	if len(b) != denialSetLen || [4]byte(b[0:4]) != denialMagic || b[4] != ways {
		s.raw = [denialSetLen]byte{}
		copy(s.raw[0:4], denialMagic[:])
		s.raw[4] = ways
		return false
	}
	copy(s.raw[:], b)
	return true
}

func (s *denialSet) entry(i int) (fp uint64, until int64) {
	off := setHeaderLen + i*denialEntryLen
	return binary.LittleEndian.Uint64(s.raw[off:]), int64(binary.LittleEndian.Uint64(s.raw[off+8:]))
}

func (s *denialSet) put(i int, fp uint64, until int64) {
	off := setHeaderLen + i*denialEntryLen
	binary.LittleEndian.PutUint64(s.raw[off:], fp)
	binary.LittleEndian.PutUint64(s.raw[off+8:], uint64(until))
}

// denialKey writes the shared-data key of fp's set of rule ri in l.nameBuf.
func (g *Global) denialKey(ri int, fp uint64) []byte {
	gr := &g.rules[ri]
	g.l.nameBuf = appendHex(append(g.l.nameBuf[:0], gr.prefix...), (fp>>1)%gr.nsets) // fp has its low bit forced to 1
	return g.l.nameBuf
}

// cached reports whether the RLS refused client fp of rule ri until a time
// after now, and until when. A failed read is a miss.
func (g *Global) cached(ri int, fp uint64, now int64) (int64, bool) {
	val, _, err := g.l.store.GetSharedData(g.denialKey(ri, fp))
	if err != nil || !g.set.load(val) {
		return 0, false
	}
	for i := 0; i < ways; i++ {
		if f, until := g.set.entry(i); f == fp && until > now {
			return until, true
		}
	}
	return 0, false
}

// remember records at now that the RLS refuses client fp of rule ri until
// until. Best effort: one read and one compare-and-swap write.
func (g *Global) remember(ri int, fp uint64, until, now int64) {
	l := g.l
	key := g.denialKey(ri, fp)
	val, cas, err := l.store.GetSharedData(key)
	switch {
	case err == nil:
		g.set.load(val)
	case err == ErrNotFound:
		// Creates the key, but cannot overwrite one made meanwhile (see
		// freshCAS).
		if cas, err = l.freshCAS(now); err != nil {
			return
		}
		g.set.load(nil)
	default:
		return
	}
	k, earliest := -1, int64(0)
	for i := 0; i < ways; i++ {
		f, u := g.set.entry(i)
		if f == fp || f == 0 {
			k = i
			break
		}
		if k < 0 || u < earliest {
			k, earliest = i, u
		}
	}
	g.set.put(k, fp, until)
	_ = l.store.SetSharedData(key, g.set.raw[:], cas)
}
