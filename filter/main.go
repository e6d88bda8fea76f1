//go:build wasip1

// Command filter is tokengate's proxy-wasm module: build it with
// `make wasm` (GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared) and load
// build/tokengate.wasm into Envoy or Istio. This package is wiring only: the
// ABI lives in internal/proxywasm, the decisions in internal/limiter.
package main

import "github.com/tokengate/tokengate/internal/proxywasm"

func init() { proxywasm.SetHandler(newVM()) }

// main is never called in a c-shared (reactor) module; Go requires it.
func main() {}
