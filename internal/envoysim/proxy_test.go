package envoysim

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRoundRobinAndForwarding(t *testing.T) {
	bs := startBackends(t, 3)
	cfg := fixture(t)
	uc := cfg.cluster("users")
	uc.Endpoints = endpoints(t, bs)
	fastHealth(uc)
	s := startServer(t, cfg, 2, newFakeFilter())
	c := &http.Client{}
	counts := map[string]int{}
	for i := range 30 {
		resp, body := get(t, c, s, "/api/users/7?q=1", "X-Forwarded-For", "10.0.0.9")
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
		counts[resp.Header.Get("X-Served-By")]++
		if i == 0 {
			if p := resp.Header.Get("X-Path"); p != "/v1/users/7?q=1" {
				t.Errorf("prefix_rewrite: upstream saw %q", p)
			}
			if f := resp.Header.Get("X-Fwd"); f != "10.0.0.9,127.0.0.1" {
				t.Errorf("x-forwarded-for: %q", f)
			}
			if h := resp.Header.Get("X-Host"); h != s.ListenAddr() {
				t.Errorf("host: %q", h)
			}
			if resp.Header.Get("X-Fake-Route") != "users" || resp.Header.Get("Server") != serverName || resp.Header.Get("X-Envoy-Upstream-Service-Time") == "" {
				t.Errorf("response headers: %v", resp.Header)
			}
		}
	}
	for _, b := range bs {
		if counts[b.name] != 10 {
			t.Fatalf("one connection, 30 requests over 3 hosts: %v", counts)
		}
	}
	st := statsOf(t, s)
	if st["cluster.users.upstream_rq_total"] != 30 || st["cluster.users.upstream_rq_200"] != 30 ||
		st["cluster.users.membership_healthy"] != 3 || st["http.gateway.downstream_rq_2xx"] != 30 ||
		st["wasmcustom.fake.allowed"] != 30 {
		t.Fatalf("stats: %v", st)
	}
}

func TestRoutesAndLocalReplies(t *testing.T) {
	s, backend := oneBackendServer(t, newFakeFilter())
	c := &http.Client{}

	resp, body := get(t, c, s, "/api/users/1", "X-Deny", "1")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" || resp.Header.Get("X-Fake") != "local" || body != "slow down\n" {
		t.Errorf("filter local reply: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	if backend.served.Load() != 0 {
		t.Errorf("a denied request reached the upstream")
	}
	resp, _ = get(t, c, s, "/other")
	if resp.StatusCode != 404 || resp.Header.Get("X-Fake-Route") != "" {
		t.Errorf("no route: %d %v", resp.StatusCode, resp.Header)
	}
	if resp.Header.Get("X-Fake-Worker") == "" {
		t.Errorf("router local replies pass through the filter's response callbacks")
	}
	resp, _ = get(t, c, s, "/api/things")
	if resp.StatusCode != 200 || resp.Header.Get("X-Path") != "/api/things" || resp.Header.Get("X-Fake-Route") != "api" {
		t.Errorf("second route: %d %v", resp.StatusCode, resp.Header)
	}
	// A filter that changes :path changes the route.
	resp, _ = get(t, c, s, "/nowhere", "X-Rewrite-Path", "/api/users/9")
	if resp.StatusCode != 200 || resp.Header.Get("X-Path") != "/v1/users/9" {
		t.Errorf("route after filter: %d %v", resp.StatusCode, resp.Header)
	}
	// POST bodies are forwarded.
	r, b := post(t, s, "/api/users", []byte("hello"))
	if r.StatusCode != 200 || string(b) != "b1 POST hello" {
		t.Errorf("POST: %d %q", r.StatusCode, b)
	}
}

func TestWorkersPinnedPerConnection(t *testing.T) {
	bs := startBackends(t, 1)
	cfg := fixture(t)
	cfg.cluster("users").Endpoints = endpoints(t, bs)
	fastHealth(cfg.cluster("users"))
	f := newFakeFilter()
	s := startServer(t, cfg, 4, f)
	seen := map[string]bool{}
	for range 4 {
		c := &http.Client{Transport: &http.Transport{}} // a new connection each
		var worker string
		for j := range 3 {
			resp, _ := get(t, c, s, "/api/users")
			if j == 0 {
				worker = resp.Header.Get("X-Fake-Worker")
			} else if w := resp.Header.Get("X-Fake-Worker"); w != worker {
				t.Fatalf("one connection moved from worker %s to %s", worker, w)
			}
		}
		seen[worker] = true
		c.CloseIdleConnections()
	}
	if len(seen) != 4 {
		t.Fatalf("4 connections over 4 workers, round robin: got workers %v", seen)
	}
}

func TestHealthTransitions(t *testing.T) {
	bs := startBackends(t, 3)
	cfg := fixture(t)
	uc := cfg.cluster("users")
	uc.Endpoints = endpoints(t, bs)
	fastHealth(uc)
	uc.HealthCheck.HealthyThreshold = 2
	bs[2].healthy.Store(false) // down from the start: never healthy
	s := startServer(t, cfg, 1, newFakeFilter())
	if st := statsOf(t, s); st["cluster.users.membership_healthy"] != 2 || st["cluster.users.membership_total"] != 3 {
		t.Fatalf("initial health: %v", st)
	}
	c := &http.Client{}
	for range 10 {
		if resp, _ := get(t, c, s, "/api/users"); resp.Header.Get("X-Served-By") == "b3" {
			t.Fatal("an unhealthy host got traffic")
		}
	}
	bs[2].healthy.Store(true) // needs 2 passing checks
	waitFor(t, 2*time.Second, "b3 healthy", func() bool {
		return statsOf(t, s)["cluster.users.membership_healthy"] == 3
	})
	bs[0].healthy.Store(false) // needs 2 failing checks
	waitFor(t, 2*time.Second, "b1 unhealthy", func() bool {
		st := statsOf(t, s)
		return st["cluster.users.membership_healthy"] == 2 && st["cluster.users.health_check.healthy"] == 2
	})
	for range 10 {
		if resp, _ := get(t, c, s, "/api/users"); resp.StatusCode != 200 || resp.Header.Get("X-Served-By") == "b1" {
			t.Fatalf("after transitions: %d from %s", resp.StatusCode, resp.Header.Get("X-Served-By"))
		}
	}
	for _, b := range bs {
		b.healthy.Store(false)
	}
	waitFor(t, 2*time.Second, "no healthy host", func() bool {
		return statsOf(t, s)["cluster.users.membership_healthy"] == 0
	})
	resp, body := get(t, c, s, "/api/users")
	if resp.StatusCode != 503 || body != "no healthy upstream" {
		t.Fatalf("panic threshold 0, no healthy host: %d %q", resp.StatusCode, body)
	}
}

func TestPanicMode(t *testing.T) {
	bs := startBackends(t, 2)
	cfg := fixture(t)
	uc := cfg.cluster("users")
	uc.Endpoints = endpoints(t, bs)
	fastHealth(uc)
	uc.PanicThreshold = 50
	for _, b := range bs {
		b.healthy.Store(false)
	}
	s := startServer(t, cfg, 1, newFakeFilter())
	if resp, _ := get(t, c0(), s, "/api/users"); resp.StatusCode != 200 {
		t.Fatalf("panic mode balances over all hosts: got %d", resp.StatusCode)
	}
	if statsOf(t, s)["cluster.users.lb_healthy_panic"] == 0 {
		t.Fatal("lb_healthy_panic not counted")
	}
}

func c0() *http.Client { return &http.Client{} }

func TestRetriesOnAnotherHost(t *testing.T) {
	bs := startBackends(t, 3)
	cfg := fixture(t)
	uc := cfg.cluster("users")
	uc.Endpoints = endpoints(t, bs)
	uc.HealthCheck = nil
	uc.Outlier = nil
	// A dead endpoint: connection refused.
	uc.Endpoints = append(uc.Endpoints, Endpoint{Host: "127.0.0.1", Port: closedPort(t)})
	bs[0].status.Store(503)
	s := startServer(t, cfg, 1, newFakeFilter())
	c := c0()
	for i := range 40 {
		resp, body := get(t, c, s, "/api/users")
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	st := statsOf(t, s)
	if st["cluster.users.upstream_rq_retry"] < 20 || st["cluster.users.upstream_cx_connect_fail"] == 0 || st["cluster.users.upstream_rq_503"] < 10 {
		t.Fatalf("stats: %v", st)
	}
	// Every host failing: the last answer is returned after num_retries.
	bs[1].status.Store(500)
	bs[2].status.Store(500)
	before := statsOf(t, s)["cluster.users.upstream_rq_total"]
	resp, _ := get(t, c, s, "/api/users")
	if resp.StatusCode < 500 {
		t.Fatalf("all failing: got %d", resp.StatusCode)
	}
	if n := statsOf(t, s)["cluster.users.upstream_rq_total"] - before; n != 3 {
		t.Fatalf("1 try + 2 retries = 3 upstream requests, got %d", n)
	}
}

func TestTimeouts(t *testing.T) {
	bs := startBackends(t, 1)
	cfg := fixture(t)
	uc := cfg.cluster("users")
	uc.Endpoints = endpoints(t, bs)
	fastHealth(uc)
	r := cfg.route("users")
	r.Timeout = 150 * time.Millisecond
	bs[0].delay.Store(int64(time.Second))
	s := startServer(t, cfg, 1, newFakeFilter())
	start := time.Now()
	resp, body := get(t, c0(), s, "/api/users")
	if resp.StatusCode != 504 || body != "upstream request timeout" || time.Since(start) > 900*time.Millisecond {
		t.Fatalf("route timeout: %d %q after %v", resp.StatusCode, body, time.Since(start))
	}
	if statsOf(t, s)["cluster.users.upstream_rq_timeout"] != 1 {
		t.Fatal("upstream_rq_timeout not counted")
	}
}

func TestOutlierEjection(t *testing.T) {
	bs := startBackends(t, 2)
	cfg := fixture(t)
	uc := cfg.cluster("users")
	uc.Endpoints = endpoints(t, bs)
	fastHealth(uc)
	uc.Outlier.Interval = 50 * time.Millisecond
	uc.Outlier.BaseEjectionTime = 300 * time.Millisecond
	uc.Outlier.UnejectOnActiveHCSuccess = false
	cfg.route("users").Retry = nil
	bs[0].status.Store(500)
	s := startServer(t, cfg, 1, newFakeFilter())
	c := c0()
	fails := 0
	for range 20 {
		if resp, _ := get(t, c, s, "/api/users"); resp.StatusCode != 200 {
			fails++
		}
	}
	if fails != 3 {
		t.Fatalf("consecutive_5xx 3: want 3 failures before ejection, got %d", fails)
	}
	st := statsOf(t, s)
	if st["cluster.users.outlier_detection.ejections_enforced_total"] != 1 || st["cluster.users.outlier_detection.ejections_active"] != 1 || st["cluster.users.membership_healthy"] != 1 {
		t.Fatalf("stats: %v", st)
	}
	bs[0].status.Store(0)
	waitFor(t, 2*time.Second, "un-ejection", func() bool {
		return statsOf(t, s)["cluster.users.outlier_detection.ejections_active"] == 0
	})
}

func TestBadFilterConfig(t *testing.T) {
	cfg := fixture(t)
	cfg.Wasm.Configuration = []byte(`{"bad":true}`)
	_, err := New(context.Background(), cfg, Options{Concurrency: 1, Filter: newFakeFilter().factory()})
	if err == nil || !strings.Contains(err.Error(), "canary failed") {
		t.Fatalf("got %v", err)
	}
}

func TestAdmin(t *testing.T) {
	bs := startBackends(t, 1)
	cfg := fixture(t)
	cfg.cluster("users").Endpoints = endpoints(t, bs)
	fastHealth(cfg.cluster("users"))
	f := newFakeFilter()
	s := startServer(t, cfg, 1, f)
	if f.nodeID != "test-node" {
		t.Errorf("the filter's xds.node.id is %q, want the --service-node test-node", f.nodeID)
	}
	for path, want := range map[string]string{
		"/ready":                   "LIVE",
		"/stats?filter=membership": "cluster.users.membership_healthy: 1",
		"/stats/prometheus":        `envoy_cluster_membership_healthy{envoy_cluster_name="users"} 1`,
		"/clusters":                bs[0].addr + "::health_flags::healthy",
		"/":                        "NOT a production proxy",
		"/stats?format=json":       `"name":"server.live","value":1`,
		"/server_info":             `"service_node":"test-node"`,
	} {
		resp, err := http.Get("http://" + s.AdminAddr() + path)
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
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("%s: %d %q, want %q", path, resp.StatusCode, b, want)
		}
	}
	resp, err := http.Post("http://"+s.AdminAddr()+"/quitquitquit", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Quit():
	case <-time.After(time.Second):
		t.Fatal("quitquitquit did not signal")
	}
}

func TestStrictDNS(t *testing.T) {
	bs := startBackends(t, 1)
	cfg := fixture(t)
	cfg.cluster("users").Endpoints = endpoints(t, bs)
	fastHealth(cfg.cluster("users"))
	ac := cfg.cluster("api") // STRICT_DNS, V4_ONLY, "localhost"
	ac.Endpoints[0].Port = endpoints(t, bs)[0].Port
	s := startServer(t, cfg, 1, newFakeFilter())
	if resp, body := get(t, c0(), s, "/api/things"); resp.StatusCode != 200 || resp.Header.Get("X-Served-By") != "b1" {
		t.Fatalf("localhost, resolved: %d %q", resp.StatusCode, body)
	}
	if st := statsOf(t, s); st["cluster.api.membership_total"] != 1 {
		t.Fatalf("membership_total %d, want 1 (V4_ONLY)", st["cluster.api.membership_total"])
	}
}

// TestHealthThresholds pins Envoy's rule: unhealthy_threshold counts network failures and
// timeouts, while an HTTP answer with an unexpected status marks the host unhealthy at once.
func TestHealthThresholds(t *testing.T) {
	bs := startBackends(t, 2)
	cfg := fixture(t)
	uc := cfg.cluster("users")
	uc.Endpoints = endpoints(t, bs)
	fastHealth(uc)
	uc.HealthCheck.UnhealthyThreshold = 1000
	s := startServer(t, cfg, 1, newFakeFilter())
	bs[0].healthy.Store(false) // answers 503
	waitFor(t, 2*time.Second, "503 marks unhealthy at once", func() bool {
		return statsOf(t, s)["cluster.users.membership_healthy"] == 1
	})
	bs[1].srv.Close() // connection refused: below the threshold, still healthy
	waitFor(t, 2*time.Second, "network failures", func() bool {
		return statsOf(t, s)["cluster.users.health_check.network_failure"] >= 5
	})
	if st := statsOf(t, s); st["cluster.users.membership_healthy"] != 1 {
		t.Fatalf("5 network failures with unhealthy_threshold 1000: membership_healthy %d, want 1", st["cluster.users.membership_healthy"])
	}
}

// TestPathForwardedVerbatim: with the connection manager's path options off (Envoy's
// defaults), the path goes upstream byte for byte.
func TestPathForwardedVerbatim(t *testing.T) {
	bs := startBackends(t, 1)
	cfg := fixture(t)
	cfg.NormalizePath, cfg.MergeSlashes, cfg.RejectEscapedSlashes = false, false, false
	cfg.cluster("users").Endpoints = endpoints(t, bs)
	fastHealth(cfg.cluster("users"))
	cfg.route("users").HasRewrite = false
	s := startServer(t, cfg, 1, newFakeFilter())
	for _, p := range []string{"/api/users/a%2Fb?x=%20y", "/api/users/?", "/api/users//double"} {
		if resp, _ := get(t, c0(), s, p); resp.StatusCode != 200 || resp.Header.Get("X-Path") != p {
			t.Errorf("%s: upstream saw %q (status %d)", p, resp.Header.Get("X-Path"), resp.StatusCode)
		}
	}
}
