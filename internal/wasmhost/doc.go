// Package wasmhost is a proxy-wasm host on wazero that behaves like Envoy (>= 1.33, proxy-wasm
// ABI 0.2.0 and 0.2.1) for the parts the tokengate filter relies on. It is the project's
// stand-in for Envoy on machines where Envoy cannot be installed, so it reproduces Envoy's
// observable behaviour rather than offering a general-purpose runtime:
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
// HOST.md, next to this file, lists each Envoy behaviour reproduced, with the code and the
// test that hold it, and every known difference from Envoy.
//
// The host shares no code with the guest it tests (internal/proxywasm): it has its own pairs
// codec and status numbers, both checked against the byte vectors of internal/abivectors,
// which the guest's tests read too.
//
// Layout: imports.go is the table of what Envoy links; each host call lives beside the state it
// touches (headers.go, buffers.go, shareddata.go, metrics.go, properties.go, localreply.go,
// clock.go, log.go, wasi.go); stream.go holds a stream's state machine, serve.go VM.Serve,
// grpc.go the unary gRPC calls a guest makes through the embedder's [GrpcTransport].
//
// Concurrency: a [VM] is single-threaded like an Envoy worker; its methods serialize on an
// internal mutex, so different VMs may be driven from different goroutines in parallel.
// [SharedData] and [Metrics] are safe for concurrent use.
//
// Time: every VM reads the plugin's Clock (SystemClock by default, FakeClock in tests) for
// proxy_get_current_time_nanoseconds, WASI realtime and monotonic clocks, tick deadlines and
// the FAIL_RELOAD back-off; nothing reads the machine clock behind its back, except the
// timeout of a gRPC call, which runs on real time like the transport that carries it.
package wasmhost
