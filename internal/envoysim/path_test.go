package envoysim

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestNormalizePath holds normalizePath to Envoy's normalize_path, merge_slashes and
// path_with_escaped_slashes_action REJECT_REQUEST, as the generator writes them. ok false is
// Envoy's 400.
func TestNormalizePath(t *testing.T) {
	on := &Config{NormalizePath: true, MergeSlashes: true, RejectEscapedSlashes: true}
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"/api/x", "/api/x", true},
		{"//api/x", "/api/x", true},                             // merge_slashes
		{"/api///x//", "/api/x/", true},                         // a trailing slash stays
		{"//", "//", true},                                      // Envoy's merge keeps a leading and a trailing slash
		{"/./api/x", "/api/x", true},                            // "." segment
		{"/x/../api/x", "/api/x", true},                         // ".." segment
		{"/../api/x", "/api/x", true},                           // ".." at the root stays at the root
		{"/a/b/../../../../c", "/c", true},                      // as many ".." as wanted
		{"/a/..", "/", true},                                    // ".." at the end
		{"/a/.", "/a/", true},                                   // "." at the end
		{"/a/..b/.c", "/a/..b/.c", true},                        // dots inside names
		{"/a/b/%2E%2E/c", "/a/c", true},                         // %2E is a dot
		{"/a/b/%2e./c", "/a/c", true},                           // in either case, mixed with '.'
		{"/a%2Eb", "/a.b", true},                                // and is decoded anywhere
		{"/%61pi/x", "/api/x", true},                            // unreserved characters are decoded
		{"/%41%7E%2D%5F%30", "/A~-_0", true},                    // letters, digits, - _ ~
		{"/api\\x", "/api/x", true},                             // a backslash is a slash
		{"/x\\..\\api/x", "/api/x", true},                       // and ends dot segments
		{"/a/%3B%20%c0%af", "/a/%3B%20%c0%af", true},            // other escapes kept as sent
		{"/a\"b^c`d{e|f}g", "/a%22b%5Ec%60d%7Be%7Cf%7Dg", true}, // escaped on the way
		{"/\xc3\xa9", "/%C3%A9", true},                          // so is non-ASCII
		{"/a%zz", "/a%zz", true},                                // an invalid escape stays
		{"/A/B", "/A/B", true},                                  // no case folding
		{"/x/../api?q=/../&r=//", "/api?q=/../&r=//", true},     // the query is left alone
		{"/x?%2F", "/x?%2F", true},                              // escaped slashes in the query are fine
		{"/api%2Fx", "", false},                                 // REJECT_REQUEST
		{"/api%2fx", "", false},
		{"/api%5Cx", "", false},
		{"/api%5cx", "", false},
		{"/xyz/.%00../abc", "", false}, // NUL is refused
		{"/a\x00", "", false},
	} {
		got, ok := on.normalizePath(tc.in)
		if ok != tc.ok || ok && got != tc.want {
			t.Errorf("normalizePath(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	// Each option alone.
	for _, tc := range []struct {
		cfg      Config
		in, want string
	}{
		{Config{}, "//a/./b/../%2F", "//a/./b/../%2F"},
		{Config{MergeSlashes: true}, "//a/./b", "/a/./b"},
		{Config{NormalizePath: true}, "//a/./b/%2F", "//a/b/%2F"},
		{Config{RejectEscapedSlashes: true}, "//a/./b", "//a/./b"},
	} {
		if got, ok := tc.cfg.normalizePath(tc.in); !ok || got != tc.want {
			t.Errorf("%+v: normalizePath(%q) = %q, %v; want %q", tc.cfg, tc.in, got, ok, tc.want)
		}
	}
}

// TestPathNormalizedBeforeFilterAndRouter: paths that differ from /api/x only by slashes, dot
// segments, a backslash or an escaped unreserved character reach the filter, the route /api
// and the backend as /api/x. Escaped slashes and NUL get Envoy's 400 before the filter.
func TestPathNormalizedBeforeFilterAndRouter(t *testing.T) {
	f := newFakeFilter()
	s, b := oneBackendServer(t, f)
	for _, target := range []string{"/api/x", "//api/x", "/./api/x", "/x/../api/x", "/../api/x",
		"/%61pi/x", `/api\x`, "/api/./y/../x", "/api%2E/../api/x"} {
		raw := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", target)
		resp, body := rawRequest(t, s, raw, 5*time.Second)
		if resp.StatusCode != 200 || resp.Header.Get("X-Fake-Route") != "api" ||
			resp.Header.Get("X-Fake-Path") != "/api/x" || resp.Header.Get("X-Path") != "/api/x" {
			t.Errorf("%s: %d, route %q, filter saw %q, backend saw %q (%s)", target, resp.StatusCode,
				resp.Header.Get("X-Fake-Route"), resp.Header.Get("X-Fake-Path"), resp.Header.Get("X-Path"), body)
		}
	}
	allowed := f.allowed.Load()
	served := b.served.Load()
	for _, target := range []string{"/api%2Fx", "/x/..%5capi/x", "/api/%00"} {
		raw := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", target)
		if resp, _ := rawRequest(t, s, raw, 5*time.Second); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: got %d, want 400", target, resp.StatusCode)
		}
	}
	if f.allowed.Load() != allowed || b.served.Load() != served {
		t.Errorf("a refused path reached the filter or the backend")
	}
	if st := statsOf(t, s); st["http.gateway.downstream_rq_failed_path_normalization"] != 3 {
		t.Errorf("downstream_rq_failed_path_normalization = %d, want 3", st["http.gateway.downstream_rq_failed_path_normalization"])
	}
}
