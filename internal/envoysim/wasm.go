package envoysim

// defaultFilter builds the wasm filter chain when Options.Filter is nil; it is set by
// wasmfilter.go, which runs the module through internal/wasmhost.
var defaultFilter FilterFactory
