// Command badimport is a TEST FIXTURE for package wasmhost: a proxy-wasm module that calls
// os.Stat, which makes it import wasi_snapshot_preview1.path_filestat_get, a function Envoy
// does not offer. wasmhost.Compile must reject it, as Envoy refuses to load it.
package main

import (
	"os"
	"unsafe"
)

func main() {}

var keep []byte

//go:wasmexport proxy_abi_version_0_2_0
func abiVersion() {}

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(size uint32) uint32 {
	keep = make([]byte, size)
	return uint32(uintptr(unsafe.Pointer(&keep[0])))
}

//go:wasmexport proxy_on_configure
func onConfigure(root, size uint32) uint32 {
	_, err := os.Stat("/etc/passwd")
	if err != nil {
		return 0
	}
	return 1
}
