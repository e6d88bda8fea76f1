//go:build wasip1

package main

import (
	"errors"

	"github.com/tokengate/tokengate/internal/limiter"
	"github.com/tokengate/tokengate/internal/proxywasm"
)

// sharedData is the limiter's Store over the host's shared data.
type sharedData struct{}

func (sharedData) GetSharedData(key []byte) ([]byte, uint32, error) {
	v, cas, st := proxywasm.GetSharedData(key)
	return v, cas, statusErr(st)
}

func (sharedData) SetSharedData(key, value []byte, cas uint32) error {
	return statusErr(proxywasm.SetSharedData(key, value, cas))
}

// errSharedData stands for every other host failure: made once, so an
// error costs no allocation on the request path.
var errSharedData = errors.New("shared data: host call failed")

func statusErr(st proxywasm.Status) error {
	switch st {
	case proxywasm.StatusOK:
		return nil
	case proxywasm.StatusNotFound:
		return limiter.ErrNotFound
	case proxywasm.StatusCASMismatch:
		return limiter.ErrCASMismatch
	}
	return errSharedData
}

// hostClock reads the host's wall clock.
type hostClock struct{}

func (hostClock) Now() int64 { return proxywasm.Now() }

// metrics maps the limiter's per-rule counters to proxy-wasm metric ids.
type metrics struct {
	ids [][limiter.NumCounters]uint32
}

func (m *metrics) Add(rule int, c limiter.Counter, delta int64) {
	if id := m.ids[rule][c]; id != 0 {
		proxywasm.IncrementMetric(id, delta)
	}
}

// request is the limiter's view of the current request headers. The first
// header asked for fetches the whole map in one host call (one round trip
// into the host and one into the guest allocator, instead of two per
// header); lookups then scan it locally. Values are valid for the callback.
type request struct {
	pairs   []byte
	fetched bool
}

func (r *request) reset() { *r = request{} }

func (r *request) Header(name string) ([]byte, bool) {
	if !r.fetched {
		r.pairs, _ = proxywasm.GetHeaderPairs(proxywasm.MapRequestHeaders)
		r.fetched = true
	}
	return proxywasm.LookupPair(r.pairs, name)
}

const propSourceAddress = "source\x00address"

func (r *request) SourceAddress() ([]byte, bool) {
	v, st := proxywasm.GetProperty(propSourceAddress)
	return v, st == proxywasm.StatusOK && len(v) > 0
}
