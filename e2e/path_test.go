//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/e2e/harness"
)

// rawGet sends target byte for byte as the request target of a GET, from the loopback address
// ip (a Go client would not send a backslash), and returns the status and the body.
func rawGet(t *testing.T, listen, ip, target string) (int, string) {
	t.Helper()
	resp := rawRequest(t, listen, ip, "GET "+target+" HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n", 10*time.Second, target)
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: %v", target, err)
	}
	return resp.StatusCode, string(b)
}

// TestRulePrefixSeesNormalizedPath: behind a catch-all route, a rule on /api/ counts every
// spelling of /api/x that the backend would take for it (doubled slashes, dot segments, an
// escaped letter, a backslash), since the gateway normalizes the path before the filter. An
// escaped slash is refused with 400.
func TestRulePrefixSeesNormalizedPath(t *testing.T) {
	ports, err := harness.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	g := start(t, fmt.Sprintf(`listen: 127.0.0.1:%d
admin: 127.0.0.1:%d
concurrency: 1
wasm: %s
failure_policy: FAIL_CLOSED
filter: {rules: [{name: api, match: {path_prefix: /api/}, key: [remote_address], capacity: 2, refill: 1, interval: 1h}]}
routes:
  - name: all
    prefix: /
    backends: [127.0.0.1:%d]
    health_check: { path: /healthz, interval: 300ms, timeout: 200ms, unhealthy_threshold: 2, healthy_threshold: 1 }
`, ports[0], ports[1], wasmPath, ports[2]))
	const ip = "127.0.0.6"
	for i, target := range []string{"/api/x", "//api/x"} {
		status, body := rawGet(t, g.Listen, ip, target)
		if status != 200 || !strings.Contains(body, `"path": "/api/x"`) {
			t.Errorf("request %d %s: %d, want 200 with the backend seeing /api/x:\n%s", i+1, target, status, body)
		}
	}
	for _, target := range []string{"/./api/x", "/x/../api/x", "/../api/x", "/%61pi/x", `/api\x`, "/api//x"} {
		if status, body := rawGet(t, g.Listen, ip, target); status != http.StatusTooManyRequests {
			t.Errorf("%s after the budget of 2 on /api/: got %d, want 429 (the rule did not see /api/):\n%s", target, status, body)
		}
	}
	if status, _ := rawGet(t, g.Listen, ip, "/other/../x"); status != 200 {
		t.Errorf("/other/../x, outside the rule: got %d, want 200", status)
	}
	if status, _ := rawGet(t, g.Listen, ip, "/api%2Fx"); status != http.StatusBadRequest {
		t.Errorf("/api%%2Fx: got %d, want 400 (escaped slashes are refused)", status)
	}
	expectStats(t, g, map[string]int64{
		"wasmcustom.tokengate.api.allowed":                     2,
		"wasmcustom.tokengate.api.limited":                     6,
		"cluster.all.upstream_rq_total":                        3,
		"http.gateway.downstream_rq_failed_path_normalization": 1,
	})
}
