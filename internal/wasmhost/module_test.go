package wasmhost

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// wasmFunc is one function of a hand-assembled test module.
type wasmFunc struct {
	params, results []byte // value types: 0x7f i32, 0x7e i64
}

type wasmImport struct {
	module, name string
	sig          wasmFunc
}

type wasmExport struct {
	name   string
	sig    wasmFunc
	result int32 // what an i32 result returns (a small non-negative constant)
}

// buildWasm assembles a minimal module with the given function imports and exported
// functions (bodies return zero values), one memory, exported as "memory".
func buildWasm(imports []wasmImport, exports []wasmExport) []byte {
	leb := func(b []byte, v uint32) []byte {
		for {
			c := byte(v & 0x7f)
			v >>= 7
			if v != 0 {
				b = append(b, c|0x80)
				continue
			}
			return append(b, c)
		}
	}
	str := func(b []byte, s string) []byte { return append(leb(b, uint32(len(s))), s...) }
	section := func(out []byte, id byte, body []byte) []byte {
		return append(leb(append(out, id), uint32(len(body))), body...)
	}
	var sigs []wasmFunc
	for _, im := range imports {
		sigs = append(sigs, im.sig)
	}
	for _, ex := range exports {
		sigs = append(sigs, ex.sig)
	}
	out := []byte("\x00asm\x01\x00\x00\x00")
	var types []byte
	types = leb(types, uint32(len(sigs)))
	for _, s := range sigs {
		types = append(types, 0x60)
		types = append(leb(types, uint32(len(s.params))), s.params...)
		types = append(leb(types, uint32(len(s.results))), s.results...)
	}
	out = section(out, 1, types)
	var imp []byte
	imp = leb(imp, uint32(len(imports)))
	for i, im := range imports {
		imp = str(str(imp, im.module), im.name)
		imp = leb(append(imp, 0x00), uint32(i))
	}
	out = section(out, 2, imp)
	var fns []byte
	fns = leb(fns, uint32(len(exports)))
	for i := range exports {
		fns = leb(fns, uint32(len(imports)+i))
	}
	out = section(out, 3, fns)
	out = section(out, 5, []byte{1, 0, 1}) // one memory, min 1 page
	var exp []byte
	exp = leb(exp, uint32(len(exports)+1))
	for i, ex := range exports {
		exp = leb(append(str(exp, ex.name), 0x00), uint32(len(imports)+i))
	}
	exp = append(str(exp, "memory"), 0x02, 0)
	out = section(out, 7, exp)
	var code []byte
	code = leb(code, uint32(len(exports)))
	for _, ex := range exports {
		body := []byte{0} // no locals
		for _, r := range ex.sig.results {
			if r == 0x7e {
				body = append(body, 0x42, 0)
			} else {
				body = sleb(append(body, 0x41), ex.result)
			}
		}
		body = append(body, 0x0b)
		code = append(leb(code, uint32(len(body))), body...)
	}
	return section(out, 10, code)
}

// sleb appends v as signed LEB128.
func sleb(b []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

var (
	sigVoid      = wasmFunc{}
	sigI32I32    = wasmFunc{params: []byte{0x7f}, results: []byte{0x7f}}
	abiExport020 = wasmExport{name: "proxy_abi_version_0_2_0", sig: sigVoid}
	allocator    = wasmExport{name: "proxy_on_memory_allocate", sig: sigI32I32}
)

func TestCompileAcceptsMinimalModule(t *testing.T) {
	ctx := context.Background()
	m, err := Compile(ctx, buildWasm([]wasmImport{
		{"env", "proxy_log", wasmFunc{params: []byte{0x7f, 0x7f, 0x7f}, results: []byte{0x7f}}},
		{"env", "proxy_increment_metric", wasmFunc{params: []byte{0x7f, 0x7e}, results: []byte{0x7f}}},
		{"wasi_snapshot_preview1", "fd_write", wasmFunc{params: []byte{0x7f, 0x7f, 0x7f, 0x7f}, results: []byte{0x7f}}},
		{"wasi_snapshot_preview1", "proc_exit", wasmFunc{params: []byte{0x7f}}},
	}, []wasmExport{abiExport020, allocator}))
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	defer m.Close(ctx)
	if m.abi != abi020 {
		t.Errorf("ABI %s, want 0.2.0", m.abi)
	}
	// It starts: no callbacks exported means they are skipped.
	p, err := NewPlugin(ctx, m, PluginConfig{Name: "minimal"})
	if err != nil {
		t.Fatalf("NewPlugin: %v", err)
	}
	defer p.Close(ctx)
	resp := p.Worker(0).Serve(info, Request{Headers: req("")}, nil)
	if resp.Status != 200 || resp.LocalReply != nil {
		t.Fatalf("Serve = %+v", resp)
	}
}

func TestCompileRejects(t *testing.T) {
	i32x3 := wasmFunc{params: []byte{0x7f, 0x7f, 0x7f}, results: []byte{0x7f}}
	tests := []struct {
		name  string
		wasm  []byte
		wants []string
	}{
		{"empty module", buildWasm(nil, nil), []string{"missing proxy-wasm ABI version", "Missing or unknown Proxy-Wasm ABI version"}},
		{"no abi export", buildWasm(nil, []wasmExport{allocator}), []string{"missing proxy-wasm ABI version"}},
		{"ABI 0.1.0, which Envoy takes and this host does not", buildWasm(nil, []wasmExport{{name: "proxy_abi_version_0_1_0", sig: sigVoid}, allocator}),
			[]string{"unsupported proxy-wasm ABI version proxy_abi_version_0_1_0", "supports 0.2.0 and 0.2.1"}},
		{"unknown ABI named", buildWasm(nil, []wasmExport{{name: "proxy_abi_version_0_3_0", sig: sigVoid}, allocator}),
			[]string{"unsupported proxy-wasm ABI version proxy_abi_version_0_3_0"}},
		{"no allocator", buildWasm(nil, []wasmExport{abiExport020}), []string{"neither malloc nor proxy_on_memory_allocate"}},
		{"imports outside Envoy's set, all named", buildWasm([]wasmImport{
			{"env", "proxy_log", i32x3},
			{"env", "proxy_frobnicate", i32x3},
			{"wasi_snapshot_preview1", "path_filestat_get", wasmFunc{params: []byte{0x7f, 0x7f, 0x7f, 0x7f, 0x7f}, results: []byte{0x7f}}},
			{"wasi_snapshot_preview1", "fd_readdir", wasmFunc{params: []byte{0x7f, 0x7f, 0x7f, 0x7e, 0x7f}, results: []byte{0x7f}}},
			{"other", "thing", sigVoid},
		}, []wasmExport{abiExport020, allocator}), []string{"env.proxy_frobnicate", "wasi_snapshot_preview1.path_filestat_get",
			"wasi_snapshot_preview1.fd_readdir", "other.thing"}},
		{"import with a wrong signature", buildWasm([]wasmImport{
			{"env", "proxy_log", wasmFunc{params: []byte{0x7f, 0x7f}, results: []byte{0x7f}}},
		}, []wasmExport{abiExport020, allocator}), []string{"env.proxy_log(i32,i32)->(i32)"}},
		{"get_log_level exists only in ABI 0.2.1", buildWasm([]wasmImport{
			{"env", "proxy_get_log_level", sigI32I32},
		}, []wasmExport{abiExport020, allocator}), []string{"env.proxy_get_log_level"}},
		{"0.1.0-only function in a 0.2.0 module", buildWasm([]wasmImport{
			{"env", "proxy_continue_request", wasmFunc{results: []byte{0x7f}}},
		}, []wasmExport{abiExport020, allocator}), []string{"env.proxy_continue_request"}},
		{"callback with a wrong signature", buildWasm(nil, []wasmExport{abiExport020, allocator,
			{name: "proxy_on_request_headers", sig: wasmFunc{params: []byte{0x7f, 0x7f}, results: []byte{0x7f}}}}),
			[]string{"proxy_on_request_headers(i32,i32)->(i32)"}},
		{"gRPC callback with a wrong signature", buildWasm(nil, []wasmExport{abiExport020, allocator,
			{name: "proxy_on_grpc_close", sig: wasmFunc{params: []byte{0x7f, 0x7f, 0x7f}, results: []byte{0x7f}}}}),
			[]string{"proxy_on_grpc_close(i32,i32,i32)->(i32)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Compile(context.Background(), tt.wasm)
			if err == nil {
				m.Close(context.Background())
				t.Fatal("Compile succeeded, want an error")
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestCompileAcceptsGetLogLevelInABI021(t *testing.T) {
	m, err := Compile(context.Background(), buildWasm([]wasmImport{
		{"env", "proxy_get_log_level", sigI32I32},
	}, []wasmExport{{name: "proxy_abi_version_0_2_1", sig: sigVoid}, allocator}))
	if err != nil {
		t.Fatal(err)
	}
	m.Close(context.Background())
}

// TestCompileRejectsOSStat: a Go module that calls os.Stat imports path_filestat_get, which
// Envoy's WASI lacks; Envoy refuses to load it and so must the host.
func TestCompileRejectsOSStat(t *testing.T) {
	m, err := Compile(context.Background(), guestWasm(t, "badimport"))
	if err == nil {
		m.Close(context.Background())
		t.Fatal("Compile accepted a module importing path_filestat_get")
	}
	if !strings.Contains(err.Error(), "wasi_snapshot_preview1.path_filestat_get") {
		t.Fatalf("error does not name the import: %v", err)
	}
}

// TestCompileGuestImportsOnlyEnvoySet pins the imports of the standard Go fixture: all are
// in Envoy's set, so it compiles.
func TestCompileGuestImportsOnlyEnvoySet(t *testing.T) {
	m := guestModule(t, "guest")
	if m.abi != abi020 {
		t.Fatalf("ABI %s, want 0.2.0", m.abi)
	}
	for _, def := range m.cm.ImportedFunctions() {
		mod, name, _ := def.Import()
		if mod == "wasi_snapshot_preview1" {
			found := false
			for _, f := range wasiFunctions() {
				found = found || f.name == name
			}
			if !found {
				t.Errorf("guest imports %s.%s, not in Envoy's WASI set", mod, name)
			}
		}
	}
}

func TestWASISetIsEnvoys(t *testing.T) {
	want := strings.Fields(`args_get args_sizes_get clock_time_get environ_get environ_sizes_get
		fd_close fd_fdstat_get fd_fdstat_set_flags fd_prestat_get fd_prestat_dir_name fd_write
		poll_oneoff proc_exit random_get sched_yield fd_read fd_seek path_open`)
	got := map[string]bool{}
	for _, f := range wasiFunctions() {
		got[f.name] = true
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("missing WASI function %s", w)
		}
		delete(got, w)
	}
	for extra := range got {
		t.Errorf("WASI function %s is not offered by Envoy", extra)
	}
}

// TestCompileCacheDir: with CompileCacheEnv naming a directory, a compile leaves the
// compiled code there; naming something that is not a directory fails Compile with the
// variable's name. The cache is made once per process, so each case is a child process.
func TestCompileCacheDir(t *testing.T) {
	if os.Getenv("TOKENGATE_TEST_CACHE_CHILD") != "" {
		_, err := Compile(context.Background(), buildWasm(nil, []wasmExport{abiExport020, allocator}))
		fmt.Printf("compile: %v\n", err)
		return
	}
	child := func(dir string) string {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCompileCacheDir$", "-test.count=1")
		cmd.Env = append(os.Environ(), "TOKENGATE_TEST_CACHE_CHILD=1", CompileCacheEnv+"="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return string(out)
	}
	dir := t.TempDir()
	if out := child(dir); !strings.Contains(out, "compile: <nil>") {
		t.Fatalf("with a directory: %s", out)
	}
	var files int
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files++
		}
		return err
	})
	if files == 0 {
		t.Errorf("%s is empty after a compile", dir)
	}
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if out := child(notDir); !strings.Contains(out, "compile: wasmhost: compilation cache "+CompileCacheEnv+"="+notDir) {
		t.Fatalf("with a file: %s", out)
	}
}
