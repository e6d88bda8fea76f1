package wasmhost

import (
	"encoding/binary"
	"strconv"
	"strings"
	"testing"
)

func le64(n uint64) string { return string(binary.LittleEndian.AppendUint64(nil, n)) }

func TestRequestHeaderOperations(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{})
	s := p.Worker(0).NewStream(info)
	defer s.Close()
	h := req("count,get::path,get:X-Request-Id,get:missing,add:x-added=1,replace:x-request-id=rid-2,remove::scheme,pairs")
	h = append(h, [2]string{"x-dup", "first"}, [2]string{"x-dup", "second"}, [2]string{"X-Upper", "u"})
	r := s.RequestHeaders(h, true)
	if r.Action != Continue || r.LocalReply != nil {
		t.Fatalf("result %+v", r)
	}
	var gets []string
	for _, kv := range r.Headers {
		if kv[0] == "x-out-get" {
			gets = append(gets, kv[1])
		}
	}
	wantGets := []string{"/api/v1?x=1/status=0", "rid-1/status=0", "/status=1"}
	if strings.Join(gets, "|") != strings.Join(wantGets, "|") {
		t.Errorf("gets = %q, want %q", gets, wantGets)
	}
	out := outputs(r.Headers)
	if out["count"] != "9/eos=1" {
		t.Errorf("count = %q (header_count, end_of_stream)", out["count"])
	}
	if v, _ := r.Headers.Get("x-added"); v != "1" {
		t.Errorf("x-added = %q", v)
	}
	if v, _ := r.Headers.Get("x-request-id"); v != "rid-2" {
		t.Errorf("replaced x-request-id = %q", v)
	}
	if _, ok := r.Headers.Get(":scheme"); ok {
		t.Error(":scheme not removed")
	}
	if v, _ := r.Headers.Get("x-dup"); v != "first" {
		t.Errorf("repeated header: got %q, want the first value", v)
	}
	if v, ok := r.Headers.Get("x-upper"); !ok || v != "u" {
		t.Errorf("names are lower-cased: %q %v", v, ok)
	}
	// pairs: count / serialized size / status, taken before add/replace/remove? No: in order.
	if !strings.HasSuffix(out["pairs"], "/status=0") {
		t.Errorf("pairs = %q", out["pairs"])
	}
}

func TestHeaderPairsFormat(t *testing.T) {
	h := Headers{{":path", "/a"}, {"k", ""}}
	b := EncodePairs(h)
	want := "\x02\x00\x00\x00" + "\x05\x00\x00\x00\x02\x00\x00\x00" + "\x01\x00\x00\x00\x00\x00\x00\x00" +
		":path\x00/a\x00k\x00\x00"
	if string(b) != want {
		t.Fatalf("EncodePairs = %q, want %q", b, want)
	}
	if got := DecodePairs(b); len(got) != 2 || got[0] != h[0] || got[1] != h[1] {
		t.Fatalf("DecodePairs = %q", got)
	}
	bad := [][]byte{
		nil,
		{1, 0, 0},
		{1, 0, 0, 0, 5, 0, 0, 0}, // sizes truncated
		{1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 'a', 'b', 'c', 0},                   // missing NUL after key
		binary.LittleEndian.AppendUint32(nil, maxPairsCount+1),                   // too many pairs
		append(EncodePairs(h), make([]byte, maxPairsBytes)...)[:maxPairsBytes+1], // oversized
	}
	for i, b := range bad {
		if got := DecodePairs(b); len(got) != 0 {
			t.Errorf("case %d: malformed input decoded to %q, want empty", i, got)
		}
	}
}

func TestSetHeaderMapPairs(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{})
	s := p.Worker(0).NewStream(info)
	r := s.RequestHeaders(req("setpairs"), true)
	s.Close()
	if len(r.Headers) != 2 || r.Headers[0] != [2]string{":path", "/new"} || r.Headers[1] != [2]string{"x-mixed", "y"} {
		t.Fatalf("headers after set_header_map_pairs = %q", r.Headers)
	}
	s = p.Worker(0).NewStream(info)
	r = s.RequestHeaders(req("setpairs:bad"), true)
	s.Close()
	if len(r.Headers) != 0 {
		t.Fatalf("malformed pairs must give an empty map, got %q", r.Headers)
	}
}

// TestRequestHeadersGoneAfterContinue: once the request headers continued, Envoy drops them:
// map 0 is BAD_ARGUMENT in the body and response callbacks, readable again in proxy_on_log.
func TestRequestHeadersGoneAfterContinue(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{})
	vm := p.Worker(0)
	var upstreamSaw Request
	resp := vm.Serve(info, Request{Headers: req(""), Body: []byte("hello")}, func(r Request) Response {
		upstreamSaw = r
		return Response{Status: 201, Headers: Headers{{"server", "up"}}, Body: []byte("ok")}
	})
	if string(upstreamSaw.Body) != "hello" {
		t.Errorf("upstream body %q", upstreamSaw.Body)
	}
	if resp.Status != 201 || resp.LocalReply != nil {
		t.Fatalf("response %+v", resp)
	}
	id := "2"
	if got, want := sharedString(t, p, "req_body."+id), "hello|status=2"; got != want {
		t.Errorf("in proxy_on_request_body: %q, want %q", got, want)
	}
	if v, _ := resp.Headers.Get("x-resp-seen"); v != "201/req-headers-status=2" {
		t.Errorf("x-resp-seen = %q", v)
	}
	if v, _ := resp.Headers.Get("x-resp-code"); v != "201" {
		t.Errorf("response.code property = %q", v)
	}
	if string(resp.Body) != "[ok]" {
		t.Errorf("response body rewritten by the filter = %q, want [ok]", resp.Body)
	}
	if got, want := sharedString(t, p, "log."+id), "/api/v1?x=1/status=0 201/status=0"; got != want {
		t.Errorf("in proxy_on_log: %q, want %q", got, want)
	}
	// Envoy's getters use the access-log headers in proxy_on_log, but the size (and writes)
	// use the dropped pointer: BAD_ARGUMENT.
	if got, want := sharedString(t, p, "logx."+id), "size:status=2 pairs:status=0/"+strconv.Itoa(len(EncodePairs(req("")))); got != want {
		t.Errorf("in proxy_on_log: %q, want %q", got, want)
	}
	// A dropped map serializes as empty: OK, pointer 0, length 0.
	if v, _ := resp.Headers.Get("x-req-pairs"); v != "status=0/ptr=0/len=0" {
		t.Errorf("pairs of dropped request headers = %q", v)
	}
	if sharedString(t, p, "deleted."+id) != "1" {
		t.Error("proxy_on_delete did not run")
	}
}

func TestRequestBodyRewrite(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{})
	var got string
	p.Worker(0).Serve(info, Request{Headers: req("bodyrewrite"), Body: []byte("original")}, func(r Request) Response {
		got = string(r.Body)
		return Response{Status: 200}
	})
	if got != "rewritten" {
		t.Fatalf("upstream got %q", got)
	}
}

func TestLocalReplyFlowsThroughResponseCallbacks(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{})
	vm := p.Worker(0)
	s := vm.NewStream(info)
	r := s.RequestHeaders(req("local:429:rate limited:slow down"), true)
	if r.Action != Pause {
		t.Errorf("action = %v, want Pause (forced whatever the guest returned)", r.Action)
	}
	if got := outputs(r.Headers)["local"]; got != "status=0" {
		t.Errorf("proxy_send_local_response returned %q, want OK", got)
	}
	lr := r.LocalReply
	if lr == nil {
		t.Fatal("no local reply")
	}
	if lr.Status != 429 || lr.Details != "rate_limited" {
		t.Errorf("status %d details %q", lr.Status, lr.Details)
	}
	want := Headers{
		{":status", "429"},
		{"x-ratelimit", "0"},
		{"content-type", "application/json"}, // the filter's header wins over text/plain
		{"content-length", "9"},
		{"x-resp-seen", "429/req-headers-status=0"}, // added by proxy_on_response_headers
		{"x-req-pairs", "status=0/ptr=" + ptrOf(lr.Headers) + "/len=" + strconv.Itoa(len(EncodePairs(r.Headers)))},
		{"x-resp-code", "429"},
	}
	if !equalHeaders(lr.Headers, want) {
		t.Errorf("reply headers\n got %q\nwant %q", lr.Headers, want)
	}
	if string(lr.Body) != "[slow down]" {
		t.Errorf("reply body %q, want it through proxy_on_response_body", lr.Body)
	}
	s.Close()
	if got, want := sharedString(t, p, "log.2"), "/api/v1?x=1/status=0 429/status=0"; got != want {
		t.Errorf("in proxy_on_log: %q, want %q", got, want)
	}
	if sharedString(t, p, "deleted.2") != "1" {
		t.Error("proxy_on_delete did not run")
	}
}

func TestLocalReplyWithoutBody(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{})
	resp := p.Worker(0).Serve(info, Request{Headers: req("local:403:access denied:")}, func(Request) Response {
		t.Error("upstream called after a local reply")
		return Response{}
	})
	want := Headers{{":status", "403"}, {"x-ratelimit", "0"}, {"x-resp-seen", "403/req-headers-status=0"},
		{"x-req-pairs", "status=0/ptr=" + ptrOf(resp.Headers) + "/len=" + strconv.Itoa(len(EncodePairs(append(req("local:403:access denied:"), [2]string{"x-out-local", "status=0"}))))},
		{"x-resp-code", "403"}}
	if resp.Status != 403 || resp.LocalReply == nil || resp.LocalReply.Details != "access_denied" ||
		!equalHeaders(resp.Headers, want) || len(resp.Body) != 0 {
		t.Fatalf("response %+v, headers want %q", resp, want)
	}
}

func TestLocalReplyDuringResponse(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{})
	resp := p.Worker(0).Serve(info, Request{Headers: req("resplocal")}, func(Request) Response {
		return Response{Status: 200, Body: []byte("secret")}
	})
	if resp.Status != 403 || resp.LocalReply == nil || resp.LocalReply.Details != "denied_in_response" || len(resp.Body) != 0 {
		t.Fatalf("response %+v", resp)
	}
}

// ptrOf returns the guest pointer the filter reported in x-req-pairs (it varies).
func ptrOf(h Headers) string {
	v, _ := h.Get("x-req-pairs")
	_, rest, _ := strings.Cut(v, "/ptr=")
	p, _, _ := strings.Cut(rest, "/")
	if p == "0" {
		return "nonzero"
	}
	return p
}

func TestLocalReplyToGRPCRequest(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{})
	h := append(req("local:429:rate limited:slow down"), [2]string{"content-type", "application/grpc"})
	resp := p.Worker(0).Serve(info, Request{Headers: h}, nil)
	if resp.Status != 200 || resp.LocalReply == nil || len(resp.Body) != 0 {
		t.Fatalf("response %+v", resp)
	}
	for k, want := range map[string]string{"content-type": "application/grpc", "grpc-status": "14",
		"grpc-message": "slow down", "x-ratelimit": "0"} {
		if v, _ := resp.Headers.Get(k); v != want {
			t.Errorf("%s = %q, want %q (headers %q)", k, v, want, resp.Headers)
		}
	}
}

func equalHeaders(a, b Headers) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestProperties(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{Name: "tg", RootID: "root-a", VMID: "vm-a", NodeID: "node-1"})
	paths := []string{"request.path", "request.url_path", "request.host", "request.method", "request.scheme",
		"request.id", "request.protocol", "request.headers.x-request-id", "request.headers.nope",
		"source.address", "source.port", "destination.address", "destination.port", "connection.id",
		"connection.mtls", "plugin_name", "plugin_root_id", "plugin_vm_id", "xds.cluster_name",
		"xds.route_name", "xds.node.id", "response.code", "no.such.thing"}
	cmds := []string{"rawprop:request.path"}
	for _, path := range paths {
		cmds = append(cmds, "prop:"+path)
	}
	s := p.Worker(0).NewStream(info)
	r := s.RequestHeaders(req(strings.Join(cmds, ",")), true)
	s.Close()
	out := outputs(r.Headers)
	want := map[string]string{
		"prop-request.path":                 "/api/v1?x=1/status=0",
		"prop-request.url_path":             "/api/v1/status=0",
		"prop-request.host":                 "example.com/status=0",
		"prop-request.method":               "GET/status=0",
		"prop-request.scheme":               "https/status=0",
		"prop-request.id":                   "rid-1/status=0",
		"prop-request.protocol":             "HTTP/1.1/status=0",
		"prop-request.headers.x-request-id": "rid-1/status=0",
		"prop-request.headers.nope":         "/status=1",
		"prop-source.address":               "10.1.2.3:54321/status=0",
		"prop-source.port":                  le64(54321) + "/status=0",
		"prop-destination.address":          "10.0.0.1:8080/status=0",
		"prop-destination.port":             le64(8080) + "/status=0",
		"prop-connection.id":                le64(77) + "/status=0",
		"prop-connection.mtls":              "\x00/status=0",
		"prop-plugin_name":                  "tg/status=0",
		"prop-plugin_root_id":               "root-a/status=0",
		"prop-plugin_vm_id":                 "vm-a/status=0",
		"prop-xds.cluster_name":             "backend/status=0",
		"prop-xds.route_name":               "r1/status=0",
		"prop-xds.node.id":                  "node-1/status=0",
		"prop-response.code":                "/status=1", // no response yet
		"prop-no.such.thing":                "/status=1",
		"rawprop-request.path":              "/status=1", // one dotted part is not a path
	}
	for k, w := range want {
		if out[k] != w {
			t.Errorf("%s = %q, want %q", k, out[k], w)
		}
	}
}

func TestSharedDataAcrossVMsAndNamespaces(t *testing.T) {
	shared := NewSharedData()
	a, _ := newTestPlugin(t, PluginConfig{Name: "a", VMID: "ns", Shared: shared, Concurrency: 2})
	b, _ := newTestPlugin(t, PluginConfig{Name: "b", VMID: "other", Shared: shared})
	run := func(vm *VM, cmds string) map[string]string {
		s := vm.NewStream(info)
		defer s.Close()
		return outputs(s.RequestHeaders(req(cmds), true).Headers)
	}
	out := run(a.Worker(0), "sset:k=v1@0")
	if out["sset-k"] != "status=0" {
		t.Fatalf("set: %q", out["sset-k"])
	}
	_, cas, _ := shared.Get("ns", "k")
	casS := strconv.Itoa(int(cas))
	out = run(a.Worker(1), "sget:k,sset:k=v2@"+strconv.Itoa(int(cas)+1000))
	if out["sget-k"] != "v1/"+casS+"/status=0" {
		t.Errorf("other worker get: %q", out["sget-k"])
	}
	if out["sset-k"] != "status=8" {
		t.Errorf("stale cas from guest: %q, want CAS_MISMATCH (8)", out["sset-k"])
	}
	out = run(a.Main(), "sset:k=v3@"+casS+",sget:k")
	if out["sset-k"] != "status=0" || !strings.HasPrefix(out["sget-k"], "v3/") {
		t.Errorf("cas update from main VM: %q %q", out["sset-k"], out["sget-k"])
	}
	out = run(b.Worker(0), "sget:k")
	if out["sget-k"] != "/0/status=1" {
		t.Errorf("other vm_id sees the key: %q", out["sget-k"])
	}
	out = run(a.Worker(0), "sset:new=x@77,sget:missing")
	if out["sset-new"] != "status=0" || out["sget-missing"] != "/0/status=1" {
		t.Errorf("create with cas != 0 / missing get: %q %q", out["sset-new"], out["sget-missing"])
	}
}

func TestMetricsThroughGuest(t *testing.T) {
	metrics := NewMetrics()
	p, _ := newTestPlugin(t, PluginConfig{Concurrency: 2, Metrics: metrics})
	run := func(vm *VM, cmds string) map[string]string {
		s := vm.NewStream(info)
		defer s.Close()
		return outputs(s.RequestHeaders(req(cmds), true).Headers)
	}
	run(p.Worker(0), "gauge:7,hist:10")
	run(p.Worker(1), "gauge:9,hist:30")
	out := run(p.Main(), "minc:0,mget:counter,mget:gauge,mget:histogram,mget:unknown")
	if out["minc"] != "status=2" {
		t.Errorf("increment counter by 0 = %q, want BAD_ARGUMENT", out["minc"])
	}
	// Counters add up across VMs: 3 requests, one per VM, each incremented once.
	if out["mget-counter"] != "3/status=0" {
		t.Errorf("get counter = %q", out["mget-counter"])
	}
	if out["mget-gauge"] != "9/status=0" {
		t.Errorf("get gauge = %q (last set wins)", out["mget-gauge"])
	}
	if out["mget-histogram"] != "0/status=2" || out["mget-unknown"] != "0/status=1" {
		t.Errorf("get histogram %q (want BAD_ARGUMENT), unknown %q (want NOT_FOUND)", out["mget-histogram"], out["mget-unknown"])
	}
	out = run(p.Main(), "minc:-3")
	if out["minc"] != "status=2" {
		t.Errorf("negative counter increment = %q", out["minc"])
	}
	if v, ok := metrics.Get("wasmcustom.guest.requests"); !ok || v != 4 {
		t.Errorf("wasmcustom.guest.requests = %d %v", v, ok)
	}
	if v, _ := metrics.Get("wasmcustom.guest.sizes"); v != 2 {
		t.Errorf("histogram count = %d", v)
	}
	var text, prom strings.Builder
	metrics.WriteText(&text)
	metrics.WritePrometheus(&prom)
	wantText := "wasmcustom.guest.last_size: 9\nwasmcustom.guest.requests: 4\nwasmcustom.guest.sizes: count=2 sum=40\n"
	if text.String() != wantText {
		t.Errorf("WriteText:\n%s\nwant:\n%s", text.String(), wantText)
	}
	for _, w := range []string{"# TYPE guest_requests counter\nguest_requests{} 4\n", "# TYPE guest_last_size gauge\nguest_last_size{} 9\n",
		"guest_sizes_count{} 2\n", "guest_sizes_sum{} 40\n"} {
		if !strings.Contains(prom.String(), w) {
			t.Errorf("WritePrometheus lacks %q:\n%s", w, prom.String())
		}
	}
	if strings.Contains(prom.String(), "wasmcustom") {
		t.Errorf("prometheus output keeps the wasmcustom prefix:\n%s", prom.String())
	}
}
