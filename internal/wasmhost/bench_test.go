package wasmhost

import (
	"context"
	"sync"
	"testing"
)

var benchUpstream = func(Request) Response {
	return Response{Status: 200, Headers: Headers{{":status", "200"}, {"content-type", "text/plain"}}}
}

// BenchmarkServe drives the whole callback sequence (context create, request headers,
// response headers, log, done, delete) through the test guest, which does one header get,
// one map insert and one metric increment per request.
func BenchmarkServe(b *testing.B) {
	p, _ := newTestPlugin(b, PluginConfig{})
	vm := p.Worker(0)
	h := req("")
	b.ReportAllocs()
	for b.Loop() {
		vm.Serve(info, Request{Headers: h}, benchUpstream)
	}
}

// BenchmarkServeSharedData adds a shared-data get and a cas set per request.
func BenchmarkServeSharedData(b *testing.B) {
	p, _ := newTestPlugin(b, PluginConfig{})
	vm := p.Worker(0)
	vm.Serve(info, Request{Headers: req("sset:k=v@0")}, benchUpstream)
	h := req("sget:k,sset:k=w@0")
	b.ReportAllocs()
	for b.Loop() {
		vm.Serve(info, Request{Headers: h}, benchUpstream)
	}
}

func BenchmarkServeParallel(b *testing.B) {
	p, _ := newTestPlugin(b, PluginConfig{Concurrency: 2})
	var mu sync.Mutex
	next := 0
	h := req("")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		vm := p.Worker(next % p.Workers())
		next++
		mu.Unlock()
		for pb.Next() {
			vm.Serve(info, Request{Headers: h}, benchUpstream)
		}
	})
}

// noopModule is a hand-assembled filter whose callbacks all return 0 at once: Serve on it
// measures the host's own cost of the callback sequence.
func noopModule(t testing.TB) *Module {
	i := byte(0x7f)
	w := func(n int, result bool) wasmFunc {
		f := wasmFunc{params: make([]byte, n)}
		for k := range f.params {
			f.params[k] = i
		}
		if result {
			f.results = []byte{i}
		}
		return f
	}
	m, err := Compile(context.Background(), buildWasm(nil, []wasmExport{
		abiExport020, allocator,
		{name: "_initialize", sig: w(0, false)},
		{name: "proxy_on_context_create", sig: w(2, false)},
		{name: "proxy_on_request_headers", sig: w(3, true)},
		{name: "proxy_on_response_headers", sig: w(3, true)},
		{name: "proxy_on_log", sig: w(1, false)},
		{name: "proxy_on_done", sig: w(1, true)},
		{name: "proxy_on_delete", sig: w(1, false)},
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

func BenchmarkServeNoopFilter(b *testing.B) {
	p, err := NewPlugin(context.Background(), noopModule(b), PluginConfig{Name: "noop"})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(context.Background())
	vm := p.Worker(0)
	h := req("")
	up := func(Request) Response { return Response{Status: 200} }
	b.ReportAllocs()
	for b.Loop() {
		vm.Serve(info, Request{Headers: h}, up)
	}
}
