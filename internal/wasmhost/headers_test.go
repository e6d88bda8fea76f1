package wasmhost

import (
	"strconv"
	"strings"
	"testing"
)

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
	if got, want := sharedString(t, p, "logx."+id), "size:status=2 pairs:status=0/"+strconv.Itoa(len(appendPairs(nil, req("")))); got != want {
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
