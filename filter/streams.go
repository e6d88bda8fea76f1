//go:build wasip1

package main

import "github.com/tokengate/tokengate/internal/limiter"

// stream is the state of one HTTP stream between its request and response
// headers: the decision, kept to render the response's rate-limit headers.
type stream struct {
	ctx      uint32
	root     *root
	replied  bool // a local reply was sent: it already carries the headers
	decision limiter.Decision
}

// keep copies d, which the limiter reuses, into the stream.
func (s *stream) keep(d *limiter.Decision) {
	s.decision.Denied, s.decision.Deny = d.Denied, d.Deny
	s.decision.Verdicts = append(s.decision.Verdicts[:0], d.Verdicts...)
}

// streamTable finds a stream by context id without a Go map on the request
// path: context ids grow by one per context, so a ring indexed by the low
// bits almost never collides; the rare stream that outlives a full turn of
// the ring goes to an overflow map. Streams are recycled, verdict slices
// included, so a warm VM allocates nothing per stream.
type streamTable struct {
	ring     [ringSize]*stream
	overflow map[uint32]*stream
	free     []*stream
}

const ringSize = 1024

func (t *streamTable) open(ctx uint32, r *root) {
	var s *stream
	if n := len(t.free); n > 0 {
		s, t.free = t.free[n-1], t.free[:n-1]
	} else {
		s = &stream{}
	}
	verdicts := s.decision.Verdicts[:0]
	*s = stream{ctx: ctx, root: r}
	s.decision.Verdicts = verdicts
	slot := &t.ring[ctx%ringSize]
	if *slot == nil {
		*slot = s
		return
	}
	if t.overflow == nil {
		t.overflow = make(map[uint32]*stream)
	}
	t.overflow[ctx] = s
}

func (t *streamTable) get(ctx uint32) *stream {
	if s := t.ring[ctx%ringSize]; s != nil && s.ctx == ctx {
		return s
	}
	if t.overflow == nil {
		return nil
	}
	return t.overflow[ctx]
}

// close forgets stream ctx and reports whether there was one.
func (t *streamTable) close(ctx uint32) bool {
	slot := &t.ring[ctx%ringSize]
	s := *slot
	if s != nil && s.ctx == ctx {
		*slot = nil
	} else if s = t.get(ctx); s != nil {
		delete(t.overflow, ctx)
	} else {
		return false
	}
	s.root = nil
	t.free = append(t.free, s)
	return true
}
