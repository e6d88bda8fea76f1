package envoysim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"

	"github.com/tokengate/tokengate/internal/wasmhost"
)

func init() { defaultFilter = WasmFilter(nil) }

// WasmFilter returns the FilterFactory that runs the bootstrap's .wasm through wasmhost like
// Envoy: a canary VM (a bad configuration fails here), then one VM for the main thread and one
// per worker, sharing one shared-data store and one stat store. Guest log lines go to log (nil:
// slog.Default()).
func WasmFilter(log *slog.Logger) FilterFactory {
	return func(ctx context.Context, cfg WasmConfig, workers int) (Filter, error) {
		if log == nil {
			log = slog.Default()
		}
		m, err := wasmhost.Compile(ctx, cfg.Code)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.CodePath, err)
		}
		policy := wasmhost.FailClosed
		switch cfg.FailurePolicy {
		case wasmv3.FailurePolicy_FAIL_OPEN:
			policy = wasmhost.FailOpen
		case wasmv3.FailurePolicy_FAIL_RELOAD:
			policy = wasmhost.FailReload
		}
		p, err := wasmhost.NewPlugin(ctx, m, wasmhost.PluginConfig{
			Name:          cfg.Name,
			RootID:        cfg.RootID,
			VMID:          cfg.VMID,
			Configuration: cfg.Configuration,
			Concurrency:   workers,
			FailurePolicy: policy,
			Clock:         wasmhost.SystemClock(),
			Shared:        wasmhost.NewSharedData(),
			Grpc:          cfg.Grpc,
			NodeID:        cfg.NodeID,
			Log: func(level wasmhost.LogLevel, vm, msg string) {
				log.Log(context.Background(), slogLevel(level), "wasm log "+cfg.Name+": "+msg, "vm", vm)
			},
		})
		if err != nil {
			return nil, errors.Join(err, m.Close(ctx))
		}
		f := &wasmFilter{p: p, m: m, stop: make(chan struct{}), done: make(chan struct{})}
		go f.tick()
		return f, nil
	}
}

func slogLevel(l wasmhost.LogLevel) slog.Level {
	switch l {
	case wasmhost.LogTrace, wasmhost.LogDebug:
		return slog.LevelDebug
	case wasmhost.LogInfo:
		return slog.LevelInfo
	case wasmhost.LogWarn:
		return slog.LevelWarn
	}
	return slog.LevelError
}

type wasmFilter struct {
	p    *wasmhost.Plugin
	m    *wasmhost.Module
	stop chan struct{}
	done chan struct{}
}

// tick drives the guests' timers (proxy_set_tick_period_milliseconds): Envoy fires them from
// each thread's event loop; here one goroutine polls every VM.
func (f *wasmFilter) tick() {
	defer close(f.done)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
			f.p.Tick()
		}
	}
}

func (f *wasmFilter) NewStream(worker int, info wasmhost.StreamInfo) Stream {
	vm := f.p.Worker(worker % f.p.Workers())
	return &wasmStream{hostStream: vm.NewStream(info), resumed: make(chan wasmhost.Result, 1)}
}

// Stats returns the plugin's stats: Snapshot names them in full ("wasmcustom.<name>") in a
// map of its own.
func (f *wasmFilter) Stats() map[string]int64 { return f.p.Metrics().Snapshot() }

func (f *wasmFilter) WritePrometheus(w io.Writer) error { return f.p.Metrics().WritePrometheus(w) }

func (f *wasmFilter) Close(ctx context.Context) error {
	close(f.stop)
	<-f.done
	return errors.Join(f.p.Close(ctx), f.m.Close(ctx))
}

// hostStream is what a wasmStream uses of a wasmhost.Stream.
type hostStream interface {
	RequestHeaders(h wasmhost.Headers, endOfStream bool) wasmhost.Result
	RequestBody(chunk []byte, endOfStream bool) wasmhost.Result
	ResponseHeaders(h wasmhost.Headers, endOfStream bool) wasmhost.Result
	ResponseBody(chunk []byte, endOfStream bool) wasmhost.Result
	Wait() wasmhost.Result
	Close()
}

// wasmStream is a wasmhost stream. When a request callback stops iteration without a local
// reply, a goroutine waits for the filter to resume the request from a gRPC callback
// (Stream.Wait) and delivers the outcome on Resumed; Wait returns at once when no call is in
// flight. Every action but Continue stops iteration, as in wasmhost: Pause (StopIteration)
// and the StopAllIteration ones alike.
type wasmStream struct {
	hostStream
	resumed chan wasmhost.Result
}

func (w *wasmStream) RequestHeaders(h wasmhost.Headers, endOfStream bool) wasmhost.Result {
	return w.watch(w.hostStream.RequestHeaders(h, endOfStream))
}

func (w *wasmStream) RequestBody(chunk []byte, endOfStream bool) wasmhost.Result {
	return w.watch(w.hostStream.RequestBody(chunk, endOfStream))
}

func (w *wasmStream) watch(r wasmhost.Result) wasmhost.Result {
	if r.Action != wasmhost.Continue && r.LocalReply == nil {
		go func() {
			if res := w.Wait(); res.Action == wasmhost.Continue || res.LocalReply != nil {
				select {
				case w.resumed <- res:
				default: // a resume is already waiting to be read
				}
			}
		}()
	}
	return r
}

func (w *wasmStream) Resumed() <-chan wasmhost.Result { return w.resumed }
