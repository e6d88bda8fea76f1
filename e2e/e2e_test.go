//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/e2e/harness"
	"github.com/tokengate/tokengate/envoy"
)

var (
	root     string
	tools    harness.Tools
	gateway  string // the make run command, for the bad-configuration scenario
	dp       harness.Dataplane
	wasmPath string
)

func TestMain(m *testing.M) { os.Exit(setup(m)) }

func setup(m *testing.M) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	var err error
	if root, err = harness.ModuleRoot(); err != nil {
		return fail(err)
	}
	tmp, err := os.MkdirTemp("", "tokengate-e2e-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if tools, dp, err = harness.ToolsAndDataplane(ctx, root, tmp); err != nil {
		return fail(err)
	}
	gateway = filepath.Join(tmp, "gateway")
	if err := harness.GoBuild(ctx, root, gateway, "./e2e/cmd/gateway"); err != nil {
		return fail(err)
	}
	fmt.Println("e2e: " + dp.Describe())
	wasmPath = os.Getenv("TOKENGATE_WASM")
	if wasmPath == "" {
		wasmPath = filepath.Join(root, "build", "tokengate.wasm")
	}
	if _, err := os.Stat(wasmPath); err != nil {
		wasmPath = filepath.Join(tmp, "tokengate.wasm")
		fmt.Println("e2e: building the filter into", wasmPath)
		if err := harness.BuildWasm(ctx, root, wasmPath); err != nil {
			return fail(err)
		}
	}
	fmt.Println("e2e: filter module", wasmPath)
	return m.Run()
}

// specDoc returns a gateway spec on free ports with n backends on free ports.
func specDoc(t *testing.T, concurrency, backends int, filter string) string {
	t.Helper()
	ports, err := harness.FreePorts(2 + backends)
	if err != nil {
		t.Fatal(err)
	}
	var bs []string
	for _, p := range ports[2:] {
		bs = append(bs, fmt.Sprintf("127.0.0.1:%d", p))
	}
	return fmt.Sprintf(`listen: 127.0.0.1:%d
admin: 127.0.0.1:%d
concurrency: %d
wasm: %s
failure_policy: FAIL_CLOSED
filter: %s
routes:
  - name: api
    prefix: /api
    backends: [%s]
    health_check: { path: /healthz, interval: 300ms, timeout: 200ms, unhealthy_threshold: 2, healthy_threshold: 1 }
    retries: 2
    timeout: 5s
`, ports[0], ports[1], concurrency, wasmPath, filter, strings.Join(bs, ", "))
}

// start runs a gateway for the spec and stops it when the test ends, printing every
// process's output if the test failed.
func start(t *testing.T, doc string) *harness.Gateway {
	t.Helper()
	spec, err := envoy.ParseSpec([]byte(doc))
	if err != nil {
		t.Fatalf("spec: %v\n%s", err, doc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g, err := harness.StartGateway(ctx, spec, harness.Options{
		Dir: t.TempDir(), Dataplane: dp, Tools: tools, StartBackends: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.Stop()
		if t.Failed() {
			t.Logf("bootstrap %s\n%s", g.Bootstrap, g.Logs())
		}
	})
	return g
}

// client returns a keep-alive client whose connections come from the loopback address ip.
func client(ip string, keepAlive bool) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 16},
	}
}

type reply struct {
	status int
	header http.Header
	body   string
}

func send(c *http.Client, url string, hdr ...string) (reply, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return reply{}, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return reply{}, err
	}
	b, err := io.ReadAll(resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	return reply{resp.StatusCode, resp.Header, string(b)}, err
}

func mustSend(t *testing.T, c *http.Client, url string, hdr ...string) reply {
	t.Helper()
	r, err := send(c, url, hdr...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// rawRequest writes raw byte for byte on a new connection from the loopback address ip and
// reads the response's headers; the test fails, saying what, if none comes within d. The
// connection is closed when the test ends.
func rawRequest(t *testing.T, listen, ip, raw string, d time.Duration, what string) *http.Response {
	t.Helper()
	dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: d}
	c, err := dialer.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() }) // the request is over: a close error changes nothing
	if err := c.SetDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return resp
}

func stats(t *testing.T, g *harness.Gateway) map[string]int64 {
	t.Helper()
	s, err := harness.Stats(g.Admin)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// waitStat polls /stats until name has the value want.
func waitStat(t *testing.T, g *harness.Gateway, name string, want int64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var got int64
	for time.Now().Before(deadline) {
		got = stats(t, g)[name]
		if got == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s = %d after %v, want %d", name, got, within, want)
}

func expectStats(t *testing.T, g *harness.Gateway, want map[string]int64) {
	t.Helper()
	got := stats(t, g)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("stat %s = %d, want %d", k, got[k], v)
		}
	}
}

func TestRateLimitPerIP(t *testing.T) {
	g := start(t, specDoc(t, 2, 1, `{rules: [{name: per-ip, key: [remote_address], capacity: 5, refill: 1, interval: 1s}]}`))
	url := "http://" + g.Listen + "/api/items"
	a, b := client("127.0.0.2", true), client("127.0.0.3", true)
	for i := range 5 {
		r := mustSend(t, a, url)
		if r.status != 200 || !strings.HasPrefix(r.header.Get("RateLimit-Policy"), `"per-ip";q=5;`) || !strings.HasPrefix(r.header.Get("RateLimit"), `"per-ip";r=`) {
			t.Fatalf("burst request %d: %d %v", i+1, r.status, r.header)
		}
	}
	r := mustSend(t, a, url)
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("request 6 of the burst of 5: got %d, want 429", r.status)
	}
	deniedUpload(t, g.Listen, "127.0.0.2")
	retry, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || retry < 1 || retry > 2 {
		t.Errorf("Retry-After %q: want 1 or 2 seconds", r.header.Get("Retry-After"))
	}
	if !strings.HasPrefix(r.header.Get("RateLimit-Policy"), `"per-ip";q=5;`) || !strings.HasPrefix(r.header.Get("RateLimit"), `"per-ip";r=0;`) {
		t.Errorf("429 rate-limit headers: %v", r.header)
	}
	if r := mustSend(t, b, url); r.status != 200 {
		t.Fatalf("another client IP: got %d, want 200", r.status)
	}
	time.Sleep(time.Duration(retry)*time.Second + 100*time.Millisecond)
	if r := mustSend(t, a, url); r.status != 200 {
		t.Fatalf("after Retry-After: got %d, want 200", r.status)
	}
	expectStats(t, g, map[string]int64{
		"wasmcustom.tokengate.per-ip.allowed": 7,
		"wasmcustom.tokengate.per-ip.limited": 2,
		"cluster.api.upstream_rq_total":       7,
	})
}

// deniedUpload sends, from a client IP whose budget is spent, the headers of a POST whose
// body never comes: the refusal must come at once, decided on the headers, not after the body
// (which would be never).
func deniedUpload(t *testing.T, listen, from string) {
	t.Helper()
	resp := rawRequest(t, listen, from, "POST /api/upload HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000000\r\n\r\nfirst bytes",
		2*time.Second, "a denied upload got no answer before its body")
	if err := resp.Body.Close(); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a denied upload: got %d, want 429", resp.StatusCode)
	}
}

func TestRateLimitPerAPIKeyAndShadow(t *testing.T) {
	g := start(t, specDoc(t, 2, 1, `{rules: [
	  {name: per-key, key: ["header:x-api-key"], capacity: 3, refill: 1, interval: 1s},
	  {name: shadow-ip, key: [remote_address], capacity: 1, refill: 1, interval: 1h, shadow: true}]}`))
	url := "http://" + g.Listen + "/api/items"
	c := client("127.0.0.1", true)
	for i := range 3 {
		if r := mustSend(t, c, url, "X-Api-Key", "alice"); r.status != 200 {
			t.Fatalf("alice request %d: %d (the shadow rule must never reject)", i+1, r.status)
		}
	}
	r := mustSend(t, c, url, "X-Api-Key", "alice")
	if r.status != 429 || r.header.Get("Retry-After") == "" || !strings.Contains(r.header.Get("RateLimit-Policy"), `"per-key";q=3;`) {
		t.Fatalf("alice request 4: %d %v, want 429 with Retry-After and the per-key policy", r.status, r.header)
	}
	for i := range 3 {
		if r := mustSend(t, c, url, "X-Api-Key", "bob"); r.status != 200 {
			t.Fatalf("bob request %d: %d, want 200 (own key; shadow rule never rejects)", i+1, r.status)
		}
	}
	s := stats(t, g)
	if s["wasmcustom.tokengate.per-key.allowed"] != 6 || s["wasmcustom.tokengate.per-key.limited"] != 1 {
		t.Errorf("per-key: allowed %d limited %d, want 6 and 1", s["wasmcustom.tokengate.per-key.allowed"], s["wasmcustom.tokengate.per-key.limited"])
	}
	if s["wasmcustom.tokengate.shadow-ip.limited"] != 0 || s["wasmcustom.tokengate.shadow-ip.shadow_limited"] < 1 {
		t.Errorf("shadow-ip: limited %d shadow_limited %d, want 0 and >= 1", s["wasmcustom.tokengate.shadow-ip.limited"], s["wasmcustom.tokengate.shadow-ip.shadow_limited"])
	}
}

const generous = `{rules: [{name: per-ip, key: [remote_address], capacity: 100000, refill: 100000, interval: 1s}]}`

func TestRoundRobin(t *testing.T) {
	g := start(t, specDoc(t, 2, 3, generous))
	c := client("127.0.0.1", true) // one connection: one worker, one balancer
	counts := map[string]int{}
	for i := range 30 {
		r := mustSend(t, c, "http://"+g.Listen+"/api/rr/"+strconv.Itoa(i))
		if r.status != 200 {
			t.Fatalf("request %d: %d %s", i, r.status, r.body)
		}
		counts[r.header.Get("X-Served-By")]++
	}
	for _, addr := range g.Order {
		if n := counts[g.Names[addr]]; n < 9 || n > 11 {
			t.Fatalf("30 requests over 3 healthy backends: %v, want 10 each (within one)", counts)
		}
	}
	expectStats(t, g, map[string]int64{"cluster.api.upstream_rq_total": 30, "cluster.api.membership_healthy": 3})
}

// load sends requests from n goroutines until stop is closed, counting failures and the
// backends that answered.
type load struct {
	mu       sync.Mutex
	served   map[string]int
	failures []string
	total    atomic.Int64
	wg       sync.WaitGroup
	stop     chan struct{}
}

func startLoad(url string, n int) *load {
	l := &load{served: map[string]int{}, stop: make(chan struct{})}
	for i := range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			c := client("127.0.0.1", true)
			for j := 0; ; j++ {
				select {
				case <-l.stop:
					return
				default:
				}
				r, err := send(c, fmt.Sprintf("%s/%d-%d", url, i, j))
				l.total.Add(1)
				l.mu.Lock()
				switch {
				case err != nil:
					l.failures = append(l.failures, err.Error())
				case r.status != 200:
					l.failures = append(l.failures, fmt.Sprintf("%d %s", r.status, strings.TrimSpace(r.body)))
				default:
					l.served[r.header.Get("X-Served-By")]++
				}
				l.mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	return l
}

// reset returns the backends that answered since the last reset.
func (l *load) reset() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.served
	l.served = map[string]int{}
	return s
}

func (l *load) end() []string {
	close(l.stop)
	l.wg.Wait()
	return l.failures
}

func backendRequests(t *testing.T, addr string) int64 {
	t.Helper()
	var v struct {
		Requests *int64 `json:"requests"`
	}
	r, err := send(http.DefaultClient, "http://"+addr+"/admin/stats")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(r.body), &v); err != nil || v.Requests == nil || r.status != 200 {
		t.Fatalf("backend stats: %d %q: %v", r.status, r.body, err)
	}
	return *v.Requests
}

func post(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Post(url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: %s", url, resp.Status)
	}
}

func TestFailover(t *testing.T) {
	g := start(t, specDoc(t, 2, 3, generous))
	b1, b2, b3 := g.Order[0], g.Order[1], g.Order[2]
	// Three clients: Envoy's default circuit breaker allows 3 retries in flight per cluster.
	l := startLoad("http://"+g.Listen+"/api/failover", 3)
	defer l.end()
	time.Sleep(500 * time.Millisecond)
	if s := l.reset(); len(s) != 3 {
		t.Fatalf("before failover, traffic on %v, want all 3 backends", s)
	}

	// A backend dies: retries on other hosts cover the requests until the health check (or
	// outlier detection) takes it out; after that no request tries it.
	g.Backends[b2].Kill()
	waitStat(t, g, "cluster.api.membership_healthy", 2, 5*time.Second)
	time.Sleep(200 * time.Millisecond)
	l.reset()
	cf := stats(t, g)["cluster.api.upstream_cx_connect_fail"]
	time.Sleep(time.Second)
	if s := l.reset(); s[g.Names[b2]] != 0 || s[g.Names[b1]] == 0 || s[g.Names[b3]] == 0 {
		t.Errorf("after %s died: traffic on %v", g.Names[b2], s)
	}
	if cf2 := stats(t, g)["cluster.api.upstream_cx_connect_fail"]; cf2 != cf {
		t.Errorf("connections to the dead backend after it was taken out: %d -> %d", cf, cf2)
	}

	// A backend that fails its health check (but still serves) gets no more requests.
	post(t, "http://"+b3+"/admin/health?fail=1")
	waitStat(t, g, "cluster.api.membership_healthy", 1, 5*time.Second)
	time.Sleep(200 * time.Millisecond)
	before := backendRequests(t, b3)
	time.Sleep(time.Second)
	if after := backendRequests(t, b3); after != before {
		t.Errorf("%s served %d requests while failing its health check", g.Names[b3], after-before)
	}

	// Both come back, and so does their traffic.
	post(t, "http://"+b3+"/admin/health?fail=0")
	if err := g.StartBackend(context.Background(), b2); err != nil {
		t.Fatal(err)
	}
	waitStat(t, g, "cluster.api.membership_healthy", 3, 5*time.Second)
	time.Sleep(200 * time.Millisecond)
	l.reset()
	time.Sleep(time.Second)
	if s := l.reset(); len(s) != 3 {
		t.Errorf("after revival, traffic on %v, want all 3 backends", s)
	}
	failures := l.end()
	l.stop = make(chan struct{}) // the deferred end is now a no-op
	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed during failover, first: %s", len(failures), l.total.Load(), failures[0])
	}
	s := stats(t, g)
	if s["cluster.api.upstream_rq_retry"] < 1 {
		t.Errorf("no retries: the requests sent to the dead backend before it was taken out were not retried")
	}
	t.Logf("%d requests; upstream_rq_retry %d, upstream_cx_connect_fail %d, ejections %d, health_check.failure %d",
		l.total.Load(), s["cluster.api.upstream_rq_retry"], s["cluster.api.upstream_cx_connect_fail"],
		s["cluster.api.outlier_detection.ejections_enforced_total"], s["cluster.api.health_check.failure"])
}

func TestWorkersShareOneBudget(t *testing.T) {
	const workers, clients, each, capacity = 4, 8, 10, 20
	g := start(t, specDoc(t, workers, 1, fmt.Sprintf(`{rules: [{name: per-ip, key: [remote_address], capacity: %d, refill: 1, interval: 1h}]}`, capacity)))
	var ok, limited, other atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client("127.0.0.1", false) // a new connection per request: spread over the workers
			for range each {
				r, err := send(c, "http://"+g.Listen+"/api/shared")
				switch {
				case err != nil:
					other.Add(1)
				case r.status == 200:
					ok.Add(1)
				case r.status == 429:
					limited.Add(1)
				default:
					other.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if ok.Load() != capacity || limited.Load() != clients*each-capacity || other.Load() != 0 {
		t.Fatalf("%d workers, %d parallel requests on one key with a burst of %d: %d admitted, %d limited, %d other",
			workers, clients*each, capacity, ok.Load(), limited.Load(), other.Load())
	}
	expectStats(t, g, map[string]int64{
		"wasmcustom.tokengate.per-ip.allowed": capacity,
		"wasmcustom.tokengate.per-ip.limited": clients*each - capacity,
	})
}

func TestBadConfiguration(t *testing.T) {
	bad := specDoc(t, 1, 1, `{rules: [{name: per-ip, key: [remote_address], capacity: 0, refill: 1, interval: 1s}]}`)
	_, err := envoy.ParseSpec([]byte(bad))
	if err == nil || !strings.Contains(err.Error(), "filter.rules[0].capacity") {
		t.Fatalf("ParseSpec: got %v, want an error naming filter.rules[0].capacity", err)
	}

	// make run's command refuses it before it starts anything, and shows the error.
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gateway, "-spec", path, "-out", dir)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "filter.rules[0].capacity") {
		t.Fatalf("gateway with a bad spec: %v, output:\n%s", err, out)
	}
	t.Logf("gateway output:\n%s", out)
	spec, err := envoy.ParseSpec([]byte(specDoc(t, 1, 1, generous)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "envoy.yaml")); err == nil {
		t.Errorf("a bootstrap was written for a bad spec")
	}

	// A bootstrap whose filter configuration is bad (written by hand, past the generator):
	// the data plane refuses to start (the canary VM fails), and never reports ready.
	bpath, err := harness.WriteBootstrap(spec, dir)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(bpath)
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(y), `"capacity":100000`, `"capacity":0`, 1)
	if doc == string(y) {
		t.Fatalf("bootstrap has no capacity to break:\n%s", y)
	}
	if err := os.WriteFile(bpath, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := harness.StartDataplane(dp, bpath, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	select {
	case <-p.Done():
		if p.ExitErr() == nil {
			t.Fatalf("the data plane exited 0 on a bad filter configuration\n%s", p.Log())
		}
		t.Logf("data plane exited (%v):\n%s", p.ExitErr(), p.Log())
	case <-time.After(30 * time.Second):
		t.Fatalf("the data plane still runs 30s after start with a bad filter configuration\n%s", p.Log())
	}
}

func TestForwarding(t *testing.T) {
	doc := specDoc(t, 1, 1, generous)
	// A URL backend: its path replaces the route prefix (prefix_rewrite).
	i := strings.Index(doc, "backends: [") + len("backends: [")
	j := strings.Index(doc[i:], "]")
	doc = doc[:i] + `"http://` + doc[i:i+j] + `/v1"` + doc[i+j:]
	g := start(t, doc)
	c := client("127.0.0.4", true)
	req, err := http.NewRequest(http.MethodPost, "http://"+g.Listen+"/api/users/7?q=a%20b", strings.NewReader("twelve bytes"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Api-Key", "k")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"method": "POST"`, `"path": "/v1/users/7?q=a%20b"`, `"X-Forwarded-For": "127.0.0.4"`,
		`"X-Api-Key": "k"`, `"body_bytes": 12`, `"served_by": "b1"`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("upstream echo lacks %s:\n%s", want, body)
		}
	}
	if resp.StatusCode != 200 || resp.Header.Get("X-Served-By") != "b1" || resp.Header.Get("RateLimit-Policy") == "" {
		t.Errorf("response: %d %v", resp.StatusCode, resp.Header)
	}
	if r := mustSend(t, c, "http://"+g.Listen+"/nowhere"); r.status != 404 {
		t.Errorf("no route: got %d, want 404", r.status)
	}
	expectStats(t, g, map[string]int64{"cluster.api.upstream_rq_total": 1})
}
