package envoysim

import (
	"context"
	"io"

	"github.com/tokengate/tokengate/internal/wasmhost"
)

// Stream is one HTTP stream through the filter chain. It speaks wasmhost's types, with
// wasmhost's meanings: a Result's Headers are the headers after the callback (never nil: what
// goes on), its Body the data that goes on when the Action is Continue, and a LocalReply has
// already passed through the filter's response callbacks.
//
// Callbacks come in Envoy's order: request headers, request body chunks (only when there is a
// body; the last one has endOfStream), response headers, response body chunks, Close. The
// request and the response direction may overlap (an upstream may answer before the request
// body has ended), so a Stream must accept a response callback while a request callback of
// the same stream is running on another goroutine; calls of one direction never overlap.
//
// A request callback that returns an action other than Continue (Pause, or a
// StopAllIteration one) without a LocalReply holds the request: the headers
// do not reach the router, and body data the filter returned Pause for stays buffered in the
// filter. Body chunks keep coming to the filter while it holds the headers, as in Envoy. The
// request goes on when a body callback returns Continue, or when the filter resumes it by
// itself (Resumed). Pause from a response callback is not implemented: the response goes on
// (DESIGN.md, known differences).
type Stream interface {
	RequestHeaders(h wasmhost.Headers, endOfStream bool) wasmhost.Result
	RequestBody(chunk []byte, endOfStream bool) wasmhost.Result
	ResponseHeaders(h wasmhost.Headers, endOfStream bool) wasmhost.Result
	ResponseBody(chunk []byte, endOfStream bool) wasmhost.Result
	// Resumed delivers the outcome when the filter ends a pause of the request by itself (for
	// example when an asynchronous call it made has answered): Action Continue with the
	// headers and the buffered body that go on, or a LocalReply. It is read only while the
	// request is held. A nil channel means the filter never resumes a stream by itself: a held
	// request then waits for its body or for the client to go away.
	Resumed() <-chan wasmhost.Result
	// Close ends the stream (access log, done, delete).
	Close()
}

// Filter is the HTTP filter chain that runs before the router, with one instance per worker.
// It must be safe for concurrent use.
type Filter interface {
	// NewStream starts a stream on the given worker, 0 <= worker < Options.Concurrency.
	NewStream(worker int, info wasmhost.StreamInfo) Stream
	// Stats returns the filter's stats by full name (for example "wasmcustom.x.allowed").
	Stats() map[string]int64
	// WritePrometheus writes the filter's stats in the Prometheus text format.
	WritePrometheus(w io.Writer) error
	// Close stops the filter and releases its VMs.
	Close(ctx context.Context) error
}

// FilterFactory builds the filter chain for a bootstrap's wasm filter configuration, with
// one instance per worker.
type FilterFactory func(ctx context.Context, cfg WasmConfig, workers int) (Filter, error)

// noFilter is the stream of a chain that is only the router: everything goes on unchanged.
type noFilter struct{}

func (noFilter) RequestHeaders(h wasmhost.Headers, _ bool) wasmhost.Result {
	return wasmhost.Result{Headers: h}
}

func (noFilter) RequestBody(chunk []byte, _ bool) wasmhost.Result {
	return wasmhost.Result{Body: chunk}
}

func (noFilter) ResponseHeaders(h wasmhost.Headers, _ bool) wasmhost.Result {
	return wasmhost.Result{Headers: h}
}

func (noFilter) ResponseBody(chunk []byte, _ bool) wasmhost.Result {
	return wasmhost.Result{Body: chunk}
}

func (noFilter) Resumed() <-chan wasmhost.Result { return nil }
func (noFilter) Close()                          {}
