package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func do(t *testing.T, srv *httptest.Server, method, path string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Api-Key", "k1")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestEcho(t *testing.T) {
	h, _ := newHandler("b7")
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, body := do(t, srv, "PUT", "/api/users/1?x=y")
	if resp.StatusCode != 200 || resp.Header.Get("X-Served-By") != "b7" {
		t.Fatalf("status %d served-by %q", resp.StatusCode, resp.Header.Get("X-Served-By"))
	}
	var e Echo
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatal(err)
	}
	if e.Method != "PUT" || e.Path != "/api/users/1?x=y" || e.ServedBy != "b7" || e.Headers["X-Api-Key"] != "k1" {
		t.Fatalf("echo %+v", e)
	}
	if resp, _ := do(t, srv, "GET", "/x?status=418"); resp.StatusCode != 418 {
		t.Fatalf("?status=418: got %d", resp.StatusCode)
	}
}

func TestHealthAndErrors(t *testing.T) {
	h, b := newHandler("b1")
	srv := httptest.NewServer(h)
	defer srv.Close()
	steps := []struct {
		method, path string
		want         int
	}{
		{"GET", "/healthz", 200},
		{"GET", "/admin/health?fail=1", 405},
		{"POST", "/admin/health?fail=1", 200},
		{"GET", "/healthz", 503},
		{"POST", "/admin/health?fail=0", 200},
		{"GET", "/healthz", 200},
		{"POST", "/admin/errors?status=503&count=2", 200},
		{"GET", "/a", 503},
		{"GET", "/a", 503},
		{"GET", "/a", 200},
		{"POST", "/admin/errors?status=500", 200},
		{"GET", "/a", 500},
		{"GET", "/healthz", 200}, // errors do not touch health
		{"POST", "/admin/errors?status=0", 200},
		{"GET", "/a", 200},
		{"POST", "/admin/errors?status=abc", 400},
	}
	for i, s := range steps {
		if resp, body := do(t, srv, s.method, s.path); resp.StatusCode != s.want {
			t.Fatalf("step %d %s %s: got %d, want %d (%s)", i, s.method, s.path, resp.StatusCode, s.want, strings.TrimSpace(body))
		}
	}
	if got := b.requests.Load(); got != 5 {
		t.Fatalf("requests = %d, want 5", got)
	}
}
