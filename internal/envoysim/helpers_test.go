package envoysim

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/wasmhost"
)

// fakeFilter stands in for the wasm filter. It denies requests that carry x-deny with a 429
// local reply, rewrites :path to x-rewrite-path, pauses requests that carry x-pause (then
// resumes them after 50 ms, or denies them when the value is "deny"), buffers the body of
// requests that carry x-buffer-body until its end, and marks responses with the worker that
// served them, the route and the :path it saw.
type fakeFilter struct {
	mu      sync.Mutex
	workers map[uint64]int // connection id -> worker
	allowed atomic.Int64
	denied  atomic.Int64
	closed  atomic.Bool
	nodeID  string // the WasmConfig's, set by the factory before any stream
}

func newFakeFilter() *fakeFilter { return &fakeFilter{workers: map[uint64]int{}} }

func (f *fakeFilter) factory() FilterFactory {
	return func(ctx context.Context, cfg WasmConfig, workers int) (Filter, error) {
		if strings.Contains(string(cfg.Configuration), "bad") {
			return nil, errors.New("canary failed: bad configuration")
		}
		f.nodeID = cfg.NodeID
		return f, nil
	}
}

func (f *fakeFilter) NewStream(worker int, info wasmhost.StreamInfo) Stream {
	f.mu.Lock()
	f.workers[info.ConnectionID] = worker
	f.mu.Unlock()
	return &fakeStream{f: f, worker: worker, info: info, resumed: make(chan wasmhost.Result, 1)}
}

func (f *fakeFilter) Stats() map[string]int64 {
	return map[string]int64{"wasmcustom.fake.allowed": f.allowed.Load(), "wasmcustom.fake.denied": f.denied.Load()}
}

func (f *fakeFilter) WritePrometheus(w io.Writer) error {
	_, err := fmt.Fprintf(w, "# TYPE fake_allowed counter\nfake_allowed %d\n", f.allowed.Load())
	return err
}

func (f *fakeFilter) Close(context.Context) error { f.closed.Store(true); return nil }

// fakeStream is one stream of fakeFilter. The request fields are used by the decoding
// goroutine only.
type fakeStream struct {
	f       *fakeFilter
	worker  int
	info    wasmhost.StreamInfo
	req     wasmhost.Headers
	buffer  bool   // x-buffer-body: hold the body until its end
	body    []byte // what is held
	resumed chan wasmhost.Result
}

var denyReply = &wasmhost.LocalReply{Status: 429, Details: "rate_limited",
	Headers: wasmhost.Headers{{":status", "429"}, {"retry-after", "1"}, {"x-fake", "local"}}, Body: []byte("slow down\n")}

func (s *fakeStream) RequestHeaders(h wasmhost.Headers, eos bool) wasmhost.Result {
	s.req = h
	if _, ok := h.Get("x-deny"); ok {
		s.f.denied.Add(1)
		return wasmhost.Result{Action: wasmhost.Pause, Headers: h, LocalReply: denyReply}
	}
	if p, ok := h.Get("x-rewrite-path"); ok {
		s.req = setHeader(h, ":path", p)
	}
	_, s.buffer = h.Get("x-buffer-body")
	if v, ok := h.Get("x-pause"); ok {
		go func() {
			time.Sleep(50 * time.Millisecond)
			if v == "deny" {
				s.f.denied.Add(1)
				s.resumed <- wasmhost.Result{Action: wasmhost.Pause, LocalReply: denyReply}
				return
			}
			s.f.allowed.Add(1)
			s.resumed <- wasmhost.Result{Headers: s.req}
		}()
		return wasmhost.Result{Action: wasmhost.Pause, Headers: s.req}
	}
	s.f.allowed.Add(1)
	return wasmhost.Result{Headers: s.req}
}

func (s *fakeStream) RequestBody(chunk []byte, eos bool) wasmhost.Result {
	if !s.buffer {
		return wasmhost.Result{Headers: s.req, Body: chunk}
	}
	s.body = append(s.body, chunk...)
	if !eos {
		return wasmhost.Result{Action: wasmhost.Pause, Headers: s.req, Body: s.body}
	}
	return wasmhost.Result{Headers: s.req, Body: s.body}
}

func (s *fakeStream) ResponseHeaders(h wasmhost.Headers, eos bool) wasmhost.Result {
	path, _ := s.req.Get(":path")
	h = append(h[:len(h):len(h)], [2]string{"x-fake-worker", strconv.Itoa(s.worker)},
		[2]string{"x-fake-route", s.info.RouteName}, [2]string{"x-fake-path", path})
	return wasmhost.Result{Headers: h}
}

func (s *fakeStream) ResponseBody(chunk []byte, _ bool) wasmhost.Result {
	return wasmhost.Result{Body: chunk}
}

func (s *fakeStream) Resumed() <-chan wasmhost.Result { return s.resumed }
func (s *fakeStream) Close()                          {}

// testBackend is an upstream whose health and answers the test controls.
type testBackend struct {
	name    string
	srv     *httptest.Server
	addr    string
	healthy atomic.Bool
	status  atomic.Int64 // forced status for non-health requests, 0 for 200
	delay   atomic.Int64 // nanoseconds
	served  atomic.Int64
}

func startBackends(t *testing.T, n int) []*testBackend {
	t.Helper()
	var bs []*testBackend
	for i := range n {
		b := &testBackend{name: fmt.Sprintf("b%d", i+1)}
		b.healthy.Store(true)
		b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Served-By", b.name)
			if r.URL.Path == "/healthz" {
				if !b.healthy.Load() {
					w.WriteHeader(503)
				}
				return
			}
			b.served.Add(1)
			if d := b.delay.Load(); d > 0 {
				select {
				case <-time.After(time.Duration(d)):
				case <-r.Context().Done():
					return
				}
			}
			w.Header().Set("X-Path", r.URL.RequestURI())
			w.Header().Set("X-Fwd", r.Header.Get("X-Forwarded-For"))
			w.Header().Set("X-Host", r.Host)
			body, err := io.ReadAll(r.Body)
			if err != nil { // envoysim reset the request (a test refused it mid-body)
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if s := b.status.Load(); s != 0 {
				w.WriteHeader(int(s))
			}
			fmt.Fprintf(w, "%s %s %s", b.name, r.Method, body)
		}))
		b.addr = b.srv.Listener.Addr().String()
		t.Cleanup(b.srv.Close)
		bs = append(bs, b)
	}
	return bs
}

func endpoints(t *testing.T, bs []*testBackend) []Endpoint {
	t.Helper()
	var es []Endpoint
	for _, b := range bs {
		host, port, err := net.SplitHostPort(b.addr)
		if err != nil {
			t.Fatal(err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, Endpoint{Host: host, Port: p})
	}
	return es
}

// fixture loads testdata/bootstrap.yaml with free ports.
func fixture(t *testing.T) *Config {
	t.Helper()
	c, err := LoadConfig("testdata/bootstrap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c.Listen, c.Admin = "127.0.0.1:0", "127.0.0.1:0"
	return c
}

func (c *Config) cluster(name string) *ClusterConfig {
	for i := range c.Clusters {
		if c.Clusters[i].Name == name {
			return &c.Clusters[i]
		}
	}
	panic("no cluster " + name)
}

func (c *Config) route(name string) *Route {
	for i := range c.VirtualHosts {
		for j := range c.VirtualHosts[i].Routes {
			if c.VirtualHosts[i].Routes[j].Name == name {
				return &c.VirtualHosts[i].Routes[j]
			}
		}
	}
	panic("no route " + name)
}

// oneBackendServer starts the fixture with one test backend behind both the users and the
// api routes, and filter f.
func oneBackendServer(t *testing.T, f *fakeFilter) (*Server, *testBackend) {
	t.Helper()
	bs := startBackends(t, 1)
	cfg := fixture(t)
	cfg.cluster("users").Endpoints = endpoints(t, bs)
	fastHealth(cfg.cluster("users"))
	cfg.cluster("api").Endpoints = endpoints(t, bs)
	cfg.cluster("api").DNS = false
	return startServer(t, cfg, 1, f), bs[0]
}

// fastHealth makes the users cluster check every 50 ms.
func fastHealth(c *ClusterConfig) {
	hc := c.HealthCheck
	hc.Interval, hc.NoTrafficInterval, hc.NoTrafficHealthyInterval = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	hc.UnhealthyInterval, hc.UnhealthyEdgeInterval, hc.HealthyEdgeInterval = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	hc.Timeout = 200 * time.Millisecond
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// startServer starts envoysim on cfg with the fake filter and waits until it is LIVE.
func startServer(t *testing.T, cfg *Config, workers int, f *fakeFilter) *Server {
	t.Helper()
	s, err := New(context.Background(), cfg, Options{
		Concurrency: workers,
		Filter:      f.factory(),
		Logger:      slog.New(slog.NewTextHandler(testLogWriter{t}, nil)),
		ServiceNode: "test-node",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	select {
	case <-s.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("server not LIVE after 5s")
	}
	return s
}

// get sends a GET through the server and returns the response with its body read.
func get(t *testing.T, c *http.Client, s *Server, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	resp, b := send(t, c, s, http.MethodGet, path, nil, hdr...)
	return resp, string(b)
}

// post sends a POST of body through the server on a new client.
func post(t *testing.T, s *Server, path string, body []byte, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	return send(t, c0(), s, http.MethodPost, path, bytes.NewReader(body), hdr...)
}

// send sends one request through the server, with hdr as name, value pairs, and returns the
// response with its body read and closed.
func send(t *testing.T, c *http.Client, s *Server, method, path string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.ListenAddr()+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
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
	return resp, b
}

// statsOf reads the admin /stats of s.
func statsOf(t *testing.T, s *Server) map[string]int64 {
	t.Helper()
	resp, err := http.Get("http://" + s.AdminAddr() + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := resp.Body.Close(); err != nil {
			t.Error(err)
		}
	}()
	m := map[string]int64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("stats line %q", sc.Text())
		}
		m[name] = n
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

// waitFor polls cond every 10 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// closedPort returns a loopback port that was just closed: connecting to it is refused.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}
