//go:build wasip1

package main

import "github.com/tokengate/tokengate/internal/limiter"

// stream is the state of one HTTP stream between its request and response
// headers.
type stream struct {
	id      uint32
	root    *root
	replied bool            // a local reply was sent: it carried the headers
	headers limiter.Headers // rendered for the response when the request was admitted
	call    limiter.Call    // the global tier's call, when one is made
	token   uint32          // of the call in flight, 0 when none
}

// byKey finds a stream by a uint32 key (a context id, a call token) without
// a Go map on the request path: the keys grow steadily, so a ring indexed by
// their low bits almost never collides; a key whose slot is taken (a stream
// that outlives a full turn of the ring) goes to an overflow map. The zero
// value is empty.
type byKey struct {
	ring     [ringSize]slot
	overflow map[uint32]*stream
}

type slot struct {
	key uint32
	s   *stream
}

const ringSize = 1024

func (t *byKey) put(key uint32, s *stream) {
	sl := &t.ring[key%ringSize]
	if sl.s == nil {
		*sl = slot{key, s}
		return
	}
	if t.overflow == nil {
		t.overflow = make(map[uint32]*stream)
	}
	t.overflow[key] = s
}

func (t *byKey) get(key uint32) *stream {
	if sl := t.ring[key%ringSize]; sl.s != nil && sl.key == key {
		return sl.s
	}
	if t.overflow == nil {
		return nil
	}
	return t.overflow[key]
}

// take removes and returns the stream of key, nil if none.
func (t *byKey) take(key uint32) *stream {
	if sl := &t.ring[key%ringSize]; sl.s != nil && sl.key == key {
		s := sl.s
		*sl = slot{}
		return s
	}
	if s, ok := t.overflow[key]; ok {
		delete(t.overflow, key)
		return s
	}
	return nil
}

// streamTable holds the open streams by context id. Streams are recycled,
// header buffers included, so a warm VM allocates nothing per stream.
type streamTable struct {
	byKey
	free []*stream
}

func (t *streamTable) open(id uint32, r *root) {
	var s *stream
	if n := len(t.free); n > 0 {
		s, t.free = t.free[n-1], t.free[:n-1]
	} else {
		s = &stream{}
	}
	s.id, s.root, s.replied, s.token = id, r, false, 0
	s.headers.Reset()
	t.put(id, s)
}

// close forgets stream id and reports whether there was one.
func (t *streamTable) close(id uint32) bool {
	s := t.take(id)
	if s == nil {
		return false
	}
	s.root = nil
	t.free = append(t.free, s)
	return true
}
