package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// abiVersion is a proxy-wasm ABI version the host supports, as a module declares it by
// exporting a function named proxy_abi_version_<major>_<minor>_<patch>.
type abiVersion uint8

const (
	abi020 abiVersion = iota + 1 // proxy_abi_version_0_2_0
	abi021                       // proxy_abi_version_0_2_1: adds proxy_get_log_level
)

func (a abiVersion) String() string {
	switch a {
	case abi020:
		return "0.2.0"
	case abi021:
		return "0.2.1"
	}
	return "abiVersion(" + strconv.Itoa(int(a)) + ")"
}

const abiExportPrefix = "proxy_abi_version_"

// moduleABI returns the ABI version a module's exports declare. Envoy also loads ABI 0.1.0
// modules; this host does not (its 0.1.0 host calls and callback signatures were never run
// by any test), so it refuses them, and any other version, by the export's name.
func moduleABI(exports map[string]api.FunctionDefinition) (abiVersion, error) {
	switch {
	case exports[abiExportPrefix+"0_2_1"] != nil:
		return abi021, nil
	case exports[abiExportPrefix+"0_2_0"] != nil:
		return abi020, nil
	}
	var declared []string
	for name := range exports {
		if strings.HasPrefix(name, abiExportPrefix) {
			declared = append(declared, name)
		}
	}
	if len(declared) == 0 {
		return 0, errors.New("wasmhost: missing proxy-wasm ABI version: the module exports no " +
			abiExportPrefix + "* function (Envoy: \"Missing or unknown Proxy-Wasm ABI version\")")
	}
	sort.Strings(declared)
	return 0, fmt.Errorf("wasmhost: unsupported proxy-wasm ABI version %s: this host supports 0.2.0 and 0.2.1",
		strings.Join(declared, ", "))
}

// CompileCacheEnv names the environment variable that moves the compilation cache to a
// directory, so that separate processes compiling the same module (the workers of a fuzz
// run, a gateway restarted by `make run`, the e2e harness) compile it once between them:
// wazero's compiler spends about 2 s on the 4 MB filter, a cached load a fraction of that.
// wazero keys the cache on the module's bytes and its own version, so a stale entry is
// never used.
const CompileCacheEnv = "TOKENGATE_COMPILE_CACHE"

// compilationCache is shared by every Module of the process: compiling the same bytes twice
// (tests, reloads of a plugin configuration) costs a hash lookup. It is made on the first
// Compile: in memory, or in the directory CompileCacheEnv names.
var compilationCache = sync.OnceValues(func() (wazero.CompilationCache, error) {
	dir := os.Getenv(CompileCacheEnv)
	if dir == "" {
		return wazero.NewCompilationCache(), nil
	}
	c, err := wazero.NewCompilationCacheWithDir(dir)
	if err != nil {
		return nil, fmt.Errorf("wasmhost: compilation cache %s=%s: %w", CompileCacheEnv, dir, err)
	}
	return c, nil
})

// Module is a compiled proxy-wasm module with its own wazero runtime, ready to be started as
// VMs by NewPlugin. It is safe for concurrent use. Close it when no plugin uses it any more.
type Module struct {
	rt        wazero.Runtime
	cm        wazero.CompiledModule
	abi       abiVersion
	allocName string // "malloc" or "proxy_on_memory_allocate"
	seq       atomic.Uint64
}

// Compile compiles a proxy-wasm module with wazero's compiler engine and checks it the way
// Envoy loads it: the module must export proxy_abi_version_0_2_1 or _0_2_0 (Envoy also takes
// _0_1_0; this host refuses it by name), must
// export malloc or proxy_on_memory_allocate, its known callbacks must have the ABI's
// signatures, and it may import only what Envoy offers (the proxy-wasm functions of its ABI
// version under "env" and Envoy's stub WASI). Every offending import is named in the error.
func Compile(ctx context.Context, wasm []byte) (*Module, error) {
	cache, err := compilationCache()
	if err != nil {
		return nil, err
	}
	cfg := wazero.NewRuntimeConfigCompiler().
		WithCompilationCache(cache).
		WithMemoryLimitPages(memoryLimitPages).
		WithCloseOnContextDone(false)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	m, err := compile(ctx, rt, wasm)
	if err != nil {
		_ = rt.Close(ctx)
		return nil, err
	}
	return m, nil
}

func compile(ctx context.Context, rt wazero.Runtime, wasm []byte) (*Module, error) {
	cm, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		return nil, fmt.Errorf("wasmhost: compile: %w", err)
	}
	m := &Module{rt: rt, cm: cm}
	exports := cm.ExportedFunctions()
	if m.abi, err = moduleABI(exports); err != nil {
		return nil, err
	}
	switch {
	case exports["malloc"] != nil:
		m.allocName = "malloc"
	case exports["proxy_on_memory_allocate"] != nil:
		m.allocName = "proxy_on_memory_allocate"
	default:
		return nil, errors.New("wasmhost: the module exports neither malloc nor proxy_on_memory_allocate (Envoy: \"Wasm module is missing malloc function.\")")
	}
	if err := checkExports(exports); err != nil {
		return nil, err
	}

	env := envFunctions(m.abi)
	wasi := wasiFunctions()
	if err := checkImports(cm.ImportedFunctions(), map[string][]hostFunc{
		"env":                    env,
		"wasi_snapshot_preview1": wasi,
		"wasi_unstable":          wasi,
	}); err != nil {
		return nil, err
	}
	for _, hm := range []struct {
		name string
		fns  []hostFunc
	}{{"env", env}, {"wasi_snapshot_preview1", wasi}, {"wasi_unstable", wasi}} {
		b := rt.NewHostModuleBuilder(hm.name)
		for _, f := range hm.fns {
			b.NewFunctionBuilder().
				WithGoModuleFunction(f.goFunc(hm.name), f.params, f.results).
				WithName(f.name).
				Export(f.name)
		}
		if _, err := b.Instantiate(ctx); err != nil {
			return nil, fmt.Errorf("wasmhost: host module %s: %w", hm.name, err)
		}
	}
	return m, nil
}

// Close releases the module's runtime and every VM still instantiated from it; close the
// plugins first, as VMs of a closed module fail every call.
func (m *Module) Close(ctx context.Context) error { return m.rt.Close(ctx) }

// exportSig is the signature cpp-host expects of a module export: n i32 params, i32 result or none.
type exportSig struct {
	params int
	result bool
}

// expectedExports are the module exports cpp-host calls, with their ABI 0.2 signatures.
var expectedExports = map[string]exportSig{
	"_initialize":                 {0, false},
	"_start":                      {0, false},
	"main":                        {2, true},
	"malloc":                      {1, true},
	"proxy_on_memory_allocate":    {1, true},
	"proxy_on_context_create":     {2, false},
	"proxy_on_vm_start":           {2, true},
	"proxy_on_configure":          {2, true},
	"proxy_on_tick":               {1, false},
	"proxy_on_done":               {1, true},
	"proxy_on_log":                {1, false},
	"proxy_on_delete":             {1, false},
	"proxy_on_request_headers":    {3, true},
	"proxy_on_request_body":       {3, true},
	"proxy_on_request_trailers":   {2, true},
	"proxy_on_response_headers":   {3, true},
	"proxy_on_response_body":      {3, true},
	"proxy_on_response_trailers":  {2, true},
	"proxy_on_queue_ready":        {2, false},
	"proxy_on_http_call_response": {5, false},
	"proxy_on_grpc_receive":       {3, false},
	"proxy_on_grpc_close":         {3, false},
}

func checkExports(exports map[string]api.FunctionDefinition) error {
	var bad []string
	for name, want := range expectedExports {
		def := exports[name]
		if def == nil {
			continue
		}
		ok := len(def.ParamTypes()) == want.params
		for _, t := range def.ParamTypes() {
			ok = ok && t == api.ValueTypeI32
		}
		rs := def.ResultTypes()
		if want.result {
			ok = ok && len(rs) == 1 && rs[0] == api.ValueTypeI32
		} else {
			ok = ok && len(rs) == 0
		}
		if !ok {
			bad = append(bad, fmt.Sprintf("%s%s", name, sigString(def.ParamTypes(), def.ResultTypes())))
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("wasmhost: exports with a wrong signature: %s", strings.Join(bad, ", "))
	}
	return nil
}

func checkImports(imports []api.FunctionDefinition, offered map[string][]hostFunc) error {
	var bad []string
	for _, def := range imports {
		mod, name, _ := def.Import()
		var found *hostFunc
		for i := range offered[mod] {
			if offered[mod][i].name == name {
				found = &offered[mod][i]
				break
			}
		}
		switch {
		case found == nil:
			bad = append(bad, mod+"."+name+" (not provided by Envoy)")
		case !slices.Equal(found.params, def.ParamTypes()) || !slices.Equal(found.results, def.ResultTypes()):
			bad = append(bad, fmt.Sprintf("%s.%s%s (Envoy's is %s)", mod, name,
				sigString(def.ParamTypes(), def.ResultTypes()), sigString(found.params, found.results)))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("wasmhost: module imports what Envoy does not offer: %s", strings.Join(bad, ", "))
	}
	return nil
}

func sigString(params, results []api.ValueType) string {
	var b strings.Builder
	b.WriteByte('(')
	for i, t := range params {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(api.ValueTypeName(t))
	}
	b.WriteString(")->(")
	for i, t := range results {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(api.ValueTypeName(t))
	}
	b.WriteByte(')')
	return b.String()
}
