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

// streamTable finds a stream by context id without a Go map on the request
// path: context ids grow by one per context, so a ring indexed by the low
// bits almost never collides; the rare stream that outlives a full turn of
// the ring goes to an overflow map. Streams are recycled, header buffers
// included, so a warm VM allocates nothing per stream.
type streamTable struct {
	ring     [ringSize]*stream
	overflow map[uint32]*stream
	free     []*stream
}

const ringSize = 1024

func (t *streamTable) open(id uint32, r *root) {
	var s *stream
	if n := len(t.free); n > 0 {
		s, t.free = t.free[n-1], t.free[:n-1]
	} else {
		s = &stream{}
	}
	s.id, s.root, s.replied, s.token = id, r, false, 0
	s.headers.Reset()
	slot := &t.ring[id%ringSize]
	if *slot == nil {
		*slot = s
		return
	}
	if t.overflow == nil {
		t.overflow = make(map[uint32]*stream)
	}
	t.overflow[id] = s
}

func (t *streamTable) get(id uint32) *stream {
	if s := t.ring[id%ringSize]; s != nil && s.id == id {
		return s
	}
	if t.overflow == nil {
		return nil
	}
	return t.overflow[id]
}

// close forgets stream id and reports whether there was one.
func (t *streamTable) close(id uint32) bool {
	slot := &t.ring[id%ringSize]
	s := *slot
	if s != nil && s.id == id {
		*slot = nil
	} else if s = t.get(id); s != nil {
		delete(t.overflow, id)
	} else {
		return false
	}
	s.root = nil
	t.free = append(t.free, s)
	return true
}
