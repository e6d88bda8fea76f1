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
//   - routes matched by path prefix (or exact path), prefix_rewrite, the route timeout, and a
//     retry policy with retry_on, num_retries, per_try_timeout, back-off and the previous_hosts
//     retry host predicate;
//   - STATIC and STRICT_DNS clusters balanced round robin (one balancer per worker) over
//     healthy hosts, with the healthy panic threshold, active HTTP health checks (intervals,
//     thresholds, Envoy's no-traffic interval), consecutive-5xx and gateway-failure outlier
//     ejection, and the max_retries / max_requests circuit breakers;
//   - an admin listener with /ready, /stats, /stats/prometheus, /clusters and /quitquitquit.
//
// A field of the bootstrap that envoysim does not implement is an error naming the field, never
// silently ignored: a configuration that loads here means the same thing it means to Envoy.
//
// DESIGN.md lists the decisions and the known differences from Envoy. The filter chain is
// injectable (Options.Filter), so the proxy's own tests need neither a compiled .wasm nor
// the wasm host.
package envoysim
