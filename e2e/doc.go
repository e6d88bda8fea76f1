// Package e2e holds tokengate's end-to-end scenarios (build tag e2e, run by `make e2e`): the
// compiled filter in a data plane, in front of sample backends (e2e/backend), driven over
// HTTP and checked through statuses, headers and the admin /stats counters.
//
// The data plane is Envoy when one is installed (ENVOY_BIN, else envoy on PATH), otherwise
// envoysim, the project's test and development stand-in; E2E_DATAPLANE=envoy|sim forces one.
// The harness is in e2e/harness; `make run` (e2e/cmd/gateway) uses it too.
package e2e
