// Package envoysim is a stand-in for Envoy, for machines where Envoy cannot be installed.
//
// It is a test and development tool, never a production proxy: production is Envoy or Istio.
// It reads the same bootstrap that the generator in package envoy writes for Envoy, and it
// implements only the part of Envoy that bootstrap uses, the way Envoy does it:
//
//   - one static listener with an HTTP connection manager; every downstream connection is
//     pinned to one worker chosen round robin, like Envoy's worker threads;
//   - the envoy.filters.http.wasm filter, run through internal/wasmhost with N+1 VMs (one per
//     worker plus the main thread, after a canary), then the router;
//   - routes matched by path prefix in one virtual host ("*"), prefix_rewrite, the route
//     timeout, and a retry policy with retry_on, num_retries, Envoy's back-off and the
//     previous_hosts retry host predicate, with a 1 MiB retry buffer;
//   - STATIC and STRICT_DNS clusters balanced round robin (one balancer per worker) over
//     healthy hosts, with the healthy panic threshold, active HTTP health checks (interval,
//     thresholds, Envoy's no-traffic interval), consecutive-5xx outlier ejection, and
//     Envoy's default max_retries / max_requests circuit breakers;
//   - an admin listener with /ready, /stats, /stats/prometheus, /clusters and /quitquitquit.
//
// The fields it accepts are the fields the generator writes; any other field is an error naming
// it, never silently ignored: a configuration that loads here means the same thing it means to
// Envoy.
//
// DESIGN.md lists the decisions and the known differences from Envoy. The filter chain is
// injectable (Options.Filter), so the proxy's own tests need neither a compiled .wasm nor
// the wasm host.
package envoysim
