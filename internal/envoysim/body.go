package envoysim

import (
	"context"
	"errors"
	"io"
	"sync"
)

// defaultBufferLimit is Envoy's per_connection_buffer_limit_bytes default (1 MiB). The
// generator sets neither it nor per_request_buffer_limit_bytes, so it bounds both what the
// router keeps of a request body for retries and what a filter may hold while it pauses.
const defaultBufferLimit = 1 << 20

// errBodyGone is what an upstream attempt reads when the part of the body it needs was
// dropped (the body outgrew the retry buffer).
var errBodyGone = errors.New("envoysim: request body no longer buffered")

// requestBody carries a request body from the downstream side (one writer) to the upstream
// attempts (one reader at a time). While retries are possible it keeps the whole body, up to
// limit bytes, so that a retry can send it again; past the limit it gives retries up, like
// Envoy's router (cluster stat retry_or_shadow_abandoned), and keeps only what the current
// attempt has not read yet, at most about limit bytes: the writer then waits for the reader.
// Safe for concurrent use.
type requestBody struct {
	mu        sync.Mutex
	cond      *sync.Cond
	data      []byte // the body from offset base on
	base      int64
	limit     int
	retain    bool  // keep everything read so far for a retry
	abandoned bool  // retain was given up: bytes before base are gone
	ended     bool  // the whole body is in
	err       error // the downstream body failed: readers fail with it
	finished  bool  // the router is done: writes are dropped
}

func newRequestBody(limit int, retain bool) *requestBody {
	b := &requestBody{limit: limit, retain: retain}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// write appends p (copied). It reports whether this write made the body give up retries. It
// waits while an unretained body holds limit bytes the reader has not taken yet.
func (b *requestBody) write(p []byte) (abandoned bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.retain && len(b.data)+len(p) > b.limit {
		b.retain, b.abandoned, abandoned = false, true, true
	}
	for !b.retain && !b.finished && len(b.data) >= b.limit {
		b.cond.Wait()
	}
	if b.finished {
		return abandoned
	}
	b.data = append(b.data, p...)
	b.cond.Broadcast()
	return abandoned
}

// end marks the body complete, or failed when err is not nil.
func (b *requestBody) end(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ended, b.err = true, err
	b.cond.Broadcast()
}

// finish drops the body: the router will not read it any more.
func (b *requestBody) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.finished, b.data = true, nil
	b.cond.Broadcast()
}

// replayable reports whether a new attempt can still read the body from its start.
func (b *requestBody) replayable() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.abandoned
}

// reader returns a reader of the body from its start, for one upstream attempt. It is closed
// when ctx ends: the HTTP transport may wait for a blocked body read before it gives up.
func (b *requestBody) reader(ctx context.Context) io.ReadCloser {
	r := &bodyReader{b: b}
	context.AfterFunc(ctx, func() { _ = r.Close() }) // Close never fails
	return r
}

type bodyReader struct {
	b      *requestBody
	pos    int64
	closed bool // guarded by b.mu
}

func (r *bodyReader) Read(p []byte) (int, error) {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		switch {
		case r.closed:
			return 0, io.ErrClosedPipe
		case r.pos < b.base:
			return 0, errBodyGone
		case r.pos < b.base+int64(len(b.data)):
			n := copy(p, b.data[r.pos-b.base:])
			r.pos += int64(n)
			if !b.retain {
				// Nobody will read these bytes again: drop them, and let the writer go on.
				b.data = b.data[r.pos-b.base:]
				b.base = r.pos
				b.cond.Broadcast()
			}
			return n, nil
		case b.err != nil:
			return 0, b.err
		case b.ended || b.finished:
			return 0, io.EOF
		}
		b.cond.Wait()
	}
}

// Close ends the reader; a Read blocked in another goroutine returns.
func (r *bodyReader) Close() error {
	r.b.mu.Lock()
	defer r.b.mu.Unlock()
	r.closed = true
	r.b.cond.Broadcast()
	return nil
}
