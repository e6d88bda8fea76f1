package envoysim

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
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
			Name:            cfg.Name,
			RootID:          cfg.RootID,
			VMID:            cfg.VMID,
			Configuration:   cfg.Configuration,
			VMConfiguration: cfg.VMConfiguration,
			Env:             cfg.Env,
			Concurrency:     workers,
			FailurePolicy:   policy,
			Clock:           wasmhost.SystemClock(),
			Shared:          wasmhost.NewSharedData(),
			ReloadBackoff:   cfg.ReloadBackoff,
			Log: func(level wasmhost.LogLevel, vm, msg string) {
				log.Log(context.Background(), slogLevel(level), "wasm log "+cfg.Name+": "+msg, "vm", vm)
			},
		})
		if err != nil {
			_ = m.Close(ctx)
			return nil, err
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

func (f *wasmFilter) NewStream(worker int, info StreamInfo) Stream {
	vm := f.p.Worker(worker % f.p.Workers())
	return wasmStream{vm.NewStream(wasmhost.StreamInfo(info))}
}

func (f *wasmFilter) Stats() map[string]int64 {
	out := map[string]int64{}
	for k, v := range f.p.Metrics().Snapshot() {
		if !strings.HasPrefix(k, "wasmcustom.") {
			k = "wasmcustom." + k
		}
		out[k] = v
	}
	return out
}

func (f *wasmFilter) WritePrometheus(w io.Writer) error { return f.p.Metrics().WritePrometheus(w) }

func (f *wasmFilter) Close(ctx context.Context) error {
	close(f.stop)
	<-f.done
	err := f.p.Close(ctx)
	_ = f.m.Close(ctx)
	return err
}

type wasmStream struct{ s *wasmhost.Stream }

func result(r wasmhost.Result) Result {
	out := Result{Headers: Headers(r.Headers), Body: r.Body}
	if lr := r.LocalReply; lr != nil {
		out.LocalReply = &LocalReply{Status: lr.Status, Details: lr.Details, Headers: Headers(lr.Headers), Body: lr.Body}
	}
	return out
}

func (w wasmStream) RequestHeaders(h Headers, eos bool) Result {
	return result(w.s.RequestHeaders(wasmhost.Headers(h), eos))
}

func (w wasmStream) RequestBody(b []byte, eos bool) Result { return result(w.s.RequestBody(b, eos)) }

func (w wasmStream) ResponseHeaders(h Headers, eos bool) Result {
	return result(w.s.ResponseHeaders(wasmhost.Headers(h), eos))
}

func (w wasmStream) ResponseBody(b []byte, eos bool) Result { return result(w.s.ResponseBody(b, eos)) }

func (w wasmStream) Close() { w.s.Close() }
