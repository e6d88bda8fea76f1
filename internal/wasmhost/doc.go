// Package wasmhost is a proxy-wasm host on wazero that behaves like Envoy (>= 1.33, proxy-wasm
// ABI 0.2.1) for the parts the tokengate filter relies on. It is the project's stand-in for Envoy
// on machines where Envoy cannot be installed, so it reproduces Envoy's observable behaviour
// rather than offering a general-purpose runtime:
//
//   - the exact import set Envoy links (proxy-wasm "env" functions and a stub WASI), so a module
//     that would fail to load in Envoy fails to load here ([Compile]);
//   - the start sequence with a throw-away canary VM, then N+1 VMs (main thread plus N workers)
//     ([NewPlugin]);
//   - restricted host calls while _initialize and the guest allocator run;
//   - per-stream callbacks, header maps, properties, local replies that flow back through the
//     filter's response callbacks ([Stream], [VM.Serve]);
//   - one process-wide shared-data store with Envoy's cas rules ([SharedData]);
//   - wasm custom metrics named "wasmcustom.<name>" and shared by all VMs ([Metrics]);
//   - per-VM tickers and wall time driven by an injectable [Clock];
//   - traps that fail a VM for good, and the FAIL_CLOSED / FAIL_OPEN / FAIL_RELOAD policies.
//
// Concurrency: a [VM] is single-threaded like an Envoy worker; its methods serialize on an
// internal mutex, so different VMs may be driven from different goroutines in parallel.
// [SharedData] and [Metrics] are safe for concurrent use.
//
// Time: every VM reads the plugin's Clock (SystemClock by default, FakeClock in tests) for
// proxy_get_current_time_nanoseconds, WASI realtime and monotonic clocks, tick deadlines and
// the FAIL_RELOAD back-off; nothing reads the machine clock behind its back.
//
// Known differences from Envoy (deliberate, to keep the stand-in small):
//   - trailers are not modelled (maps 1 and 3 are BAD_ARGUMENT, no trailer callbacks);
//   - proxy_http_call, proxy_grpc_*, shared queues and proxy_get_status link but return
//     UNIMPLEMENTED; proxy_call_foreign_function knows no function (NOT_FOUND);
//   - a local reply sent while the response is being encoded replaces the response without
//     another pass through the filter;
//   - a request the filter pauses without a local reply and never continues would hang in
//     Envoy until a timeout; VM.Serve answers 500 "wasmhost_stream_paused";
//   - histograms keep only a count and a sum.
//
// See /work/shared/docs/envoy-wasm-host.md for the behaviour reproduced here, point by point.
package wasmhost
