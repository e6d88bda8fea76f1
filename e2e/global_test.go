//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/tokengate/tokengate/e2e/harness"
	"github.com/tokengate/tokengate/envoy"
)

// The global tier runs against the real parts: Debian's redis-server and
// envoyproxy/ratelimit built by `make ratelimit`. Under CI=true a missing part
// fails the test; elsewhere it skips with what to install.

// globalParts returns the redis-server and ratelimit executables.
func globalParts(t *testing.T) harness.GlobalParts {
	t.Helper()
	parts, err := harness.FindGlobalParts(root)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return parts
}

// globalService is a Redis and a rate limit service loaded with the
// configuration the generator writes for filter.
type globalService struct {
	redis *harness.Redis
	rls   *harness.RateLimit
}

// startGlobal starts Redis and the rate limit service for filter (a plugin
// configuration with global rules) and stops both when the test ends.
func startGlobal(t *testing.T, filter string) *globalService {
	t.Helper()
	parts := globalParts(t)
	conf, err := envoy.RateLimitConfig([]byte(filter))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g := &globalService{}
	if g.redis, err = harness.StartRedis(ctx, parts.Redis, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.redis.Stop()
		if t.Failed() {
			t.Logf("redis:\n%s", g.redis.Proc.Log())
		}
	})
	if g.rls, err = harness.StartRateLimit(ctx, parts.RateLimit, t.TempDir(), conf, g.redis.Addr, "", nil); err != nil {
		t.Fatalf("%v\nconfiguration:\n%s", err, conf)
	}
	t.Cleanup(func() {
		g.rls.Stop()
		if t.Failed() {
			t.Logf("ratelimit (configuration below):\n%s\n%s", g.rls.Proc.Log(), conf)
		}
	})
	return g
}

// ask sends one descriptor to the service's /json endpoint (the same
// ShouldRateLimit the gRPC service runs) and returns its overall code.
func (g *globalService) ask(t *testing.T, domain string, entries ...[2]string) string {
	t.Helper()
	type entry struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	}
	var es []entry
	for _, e := range entries {
		es = append(es, entry{e[0], e[1]})
	}
	body, err := json.Marshal(map[string]any{
		"domain":      domain,
		"descriptors": []any{map[string]any{"entries": es}},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+g.rls.HTTP+"/json", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatal(err)
	}
	var r struct {
		OverallCode string `json:"overallCode"`
	}
	if err := json.Unmarshal(out, &r); err != nil || r.OverallCode == "" {
		t.Fatalf("/json answered %s: %s", resp.Status, out)
	}
	return r.OverallCode
}

// freshWindow waits, when less than need is left of the current fixed window
// of length unit, for the next one, so a count is not split by a boundary.
func freshWindow(t *testing.T, unit, need time.Duration) {
	t.Helper()
	now := time.Now()
	if left := now.Truncate(unit).Add(unit).Sub(now); left < need {
		t.Logf("waiting %v for a fresh %v window", left.Round(time.Millisecond), unit)
		time.Sleep(left + 50*time.Millisecond)
	}
}

// globalFilter is the plugin configuration of the global scenarios: a local
// bucket per client IP, generous enough never to refuse here, and a global
// per-minute budget per API key.
func globalFilter(limit int, timeout, failureMode string) string {
	return fmt.Sprintf(`{"rules":[
  {"name":"per-ip","key":["remote_address"],"capacity":1000,"refill":1000,"interval":"1s"},
  {"name":"fleet-per-key","match":{"path_prefix":"/api"},"key":["header:x-api-key"],
   "global":{"requests_per_unit":%d,"unit":"minute"}}],
 "rate_limit_service":{"cluster":"ratelimit","domain":"tokengate-e2e","timeout":%q,"failure_mode":%q}}`,
		limit, timeout, failureMode)
}

// TestRateLimitServiceConfig: the configuration the generator writes loads
// in the real envoyproxy/ratelimit and counts what the filter sends (the
// descriptor of config.Rule.DescriptorKeys) per client key: exactly the
// limit per window for each key, and keys do not share a budget.
func TestRateLimitServiceConfig(t *testing.T) {
	const limit = 5
	g := startGlobal(t, globalFilter(limit, "100ms", "allow"))
	freshWindow(t, time.Minute, 10*time.Second)
	for _, key := range []string{"alice", "bob"} {
		for i := 1; i <= limit+2; i++ {
			got := g.ask(t, "tokengate-e2e", [2]string{"rule", "fleet-per-key"}, [2]string{"header:x-api-key", key})
			want := "OK"
			if i > limit {
				want = "OVER_LIMIT"
			}
			if got != want {
				t.Fatalf("key %s, request %d: %s, want %s", key, i, got, want)
			}
		}
	}
	// A descriptor the configuration does not know is not limited.
	for i := 0; i < limit+2; i++ {
		if got := g.ask(t, "tokengate-e2e", [2]string{"rule", "other"}, [2]string{"header:x-api-key", "alice"}); got != "OK" {
			t.Fatalf("unknown rule: %s, want OK", got)
		}
	}
}
