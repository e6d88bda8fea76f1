package wasmhost

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

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
		{"x-req-pairs", "status=0/ptr=" + ptrOf(lr.Headers) + "/len=" + strconv.Itoa(len(appendPairs(nil, r.Headers)))},
		{"x-resp-code", "429"},
	}
	if !slices.Equal(lr.Headers, want) {
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
		{"x-req-pairs", "status=0/ptr=" + ptrOf(resp.Headers) + "/len=" + strconv.Itoa(len(appendPairs(nil, append(req("local:403:access denied:"), [2]string{"x-out-local", "status=0"}))))},
		{"x-resp-code", "403"}}
	if resp.Status != 403 || resp.LocalReply == nil || resp.LocalReply.Details != "access_denied" ||
		!slices.Equal(resp.Headers, want) || len(resp.Body) != 0 {
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
