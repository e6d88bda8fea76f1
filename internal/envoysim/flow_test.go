package envoysim

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawRequest writes raw bytes on a fresh connection and reads one response, failing the test
// if none comes within d.
func rawRequest(t *testing.T, s *Server, raw string, d time.Duration) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", s.ListenAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() }) // the test is over: a close error changes nothing
	if err := c.SetDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no response within %v: %v", d, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("response body: %v", err)
	}
	return resp, string(b)
}

func flowServer(t *testing.T) (*Server, []*testBackend) {
	t.Helper()
	bs := startBackends(t, 2)
	cfg := fixture(t)
	uc := cfg.cluster("users")
	uc.Endpoints = endpoints(t, bs)
	fastHealth(uc)
	uc.Outlier = nil
	// The fixture's 2 s route timeout is short for a loaded test machine.
	cfg.route("users").Timeout = 30 * time.Second
	return startServer(t, cfg, 1, newFakeFilter()), bs
}

// TestDeniedBeforeBody: the filter's decision on the headers is sent at once, without waiting
// for a body that has not arrived, and the connection closes (the request is incomplete).
func TestDeniedBeforeBody(t *testing.T) {
	s, bs := flowServer(t)
	start := time.Now()
	resp, body := rawRequest(t, s, "POST /api/users HTTP/1.1\r\nHost: x\r\nX-Deny: 1\r\nContent-Length: 100000\r\n\r\npartial", 2*time.Second)
	if resp.StatusCode != 429 || body != "slow down\n" || !resp.Close {
		t.Fatalf("got %d %q close=%v, want 429 with Connection: close", resp.StatusCode, body, resp.Close)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("answered after %v", d)
	}
	if bs[0].served.Load()+bs[1].served.Load() != 0 {
		t.Fatal("a denied request reached an upstream")
	}
}

// TestUpstreamBeforeBodyEnds: an allowed request reaches the upstream while its body is
// still arriving (the router starts on the headers, as Envoy's does).
func TestUpstreamBeforeBodyEnds(t *testing.T) {
	s, bs := flowServer(t)
	c, err := net.Dial("tcp", s.ListenAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }() // the test is over: a close error changes nothing
	if _, err := io.WriteString(c, "POST /api/users HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the upstream to get the request", func() bool {
		return bs[0].served.Load()+bs[1].served.Load() == 1
	})
	if _, err := io.WriteString(c, "world"); err != nil {
		t.Fatal(err)
	}
	if err := c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasSuffix(string(b), " POST helloworld") {
		t.Fatalf("got %d %q", resp.StatusCode, b)
	}
}

// TestBodyReadErrors: a body that cannot be read gets 400 (Go's default would be 200).
func TestBodyReadErrors(t *testing.T) {
	s, _ := flowServer(t)
	for name, raw := range map[string]string{
		"malformed chunk size": "POST /api/users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
		"bad chunk end":        "POST /api/users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			resp, body := rawRequest(t, s, raw, 2*time.Second)
			if resp.StatusCode != 400 || body != "Bad Request" {
				t.Fatalf("got %d %q, want 400", resp.StatusCode, body)
			}
		})
	}
	if n := statsOf(t, s)["http.gateway.downstream_cx_protocol_error"]; n != 2 {
		t.Fatalf("downstream_cx_protocol_error %d, want 2", n)
	}
}

// TestPausedStreams: a filter may pause a request and later continue it or answer it.
func TestPausedStreams(t *testing.T) {
	s, _ := flowServer(t)
	c := c0()
	resp, body := get(t, c, s, "/api/users", "X-Pause", "continue")
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "b") {
		t.Fatalf("paused then continued: %d %q", resp.StatusCode, body)
	}
	resp, body = get(t, c, s, "/api/users", "X-Pause", "deny")
	if resp.StatusCode != 429 || body != "slow down\n" {
		t.Fatalf("paused then denied: %d %q", resp.StatusCode, body)
	}
	resp, b := post(t, s, "/api/users", []byte("payload"), "X-Pause", "continue")
	if resp.StatusCode != 200 || !strings.HasSuffix(string(b), " POST payload") {
		t.Fatalf("paused POST: %d %q", resp.StatusCode, b)
	}
}

// TestRetryBuffer: a body within the buffer limit is sent again on a retry; a larger one makes
// the router give retries up (retry_or_shadow_abandoned) instead of answering 413.
func TestRetryBuffer(t *testing.T) {
	s, bs := flowServer(t)
	bs[0].status.Store(503)
	bs[1].status.Store(503)
	small := bytes.Repeat([]byte("s"), 1000)
	before := statsOf(t, s)["cluster.users.upstream_rq_total"]
	resp, b := post(t, s, "/api/users", small)
	if resp.StatusCode != 503 || !bytes.HasSuffix(b, small) {
		t.Fatalf("small body: %d, %d bytes", resp.StatusCode, len(b))
	}
	if n := statsOf(t, s)["cluster.users.upstream_rq_total"] - before; n != 3 {
		t.Fatalf("small body: %d upstream requests, want 3 (two retries)", n)
	}
	big := bytes.Repeat([]byte("b"), defaultBufferLimit+1)
	before = statsOf(t, s)["cluster.users.upstream_rq_total"]
	resp, b = post(t, s, "/api/users", big)
	if resp.StatusCode != 503 || !bytes.HasSuffix(b, big) {
		t.Fatalf("big body: %d, %d bytes", resp.StatusCode, len(b))
	}
	st := statsOf(t, s)
	if n := st["cluster.users.upstream_rq_total"] - before; n != 1 || st["cluster.users.retry_or_shadow_abandoned"] != 1 {
		t.Fatalf("big body: %d upstream requests (want 1), retry_or_shadow_abandoned %d (want 1)", n, st["cluster.users.retry_or_shadow_abandoned"])
	}
}

// TestFilterBufferLimit: a filter that holds more body than the buffer limit gets 413, like
// Envoy's connection manager; below the limit the held body goes on at its end.
func TestFilterBufferLimit(t *testing.T) {
	s, _ := flowServer(t)
	body := bytes.Repeat([]byte("x"), 100<<10)
	resp, b := post(t, s, "/api/users", body, "X-Buffer-Body", "1")
	if resp.StatusCode != 200 || !bytes.HasSuffix(b, body) {
		t.Fatalf("held body: %d, %d bytes", resp.StatusCode, len(b))
	}
	resp, b = post(t, s, "/api/users", bytes.Repeat([]byte("x"), 2*defaultBufferLimit), "X-Buffer-Body", "1")
	if resp.StatusCode != 413 || string(b) != "Payload Too Large" {
		t.Fatalf("over the limit: %d, %d bytes", resp.StatusCode, len(b))
	}
}

// TestHeaderLimits: Envoy's defaults, 60 KiB of headers and 100 headers, answer 431 above.
func TestHeaderLimits(t *testing.T) {
	s, bs := flowServer(t)
	c := c0()
	for _, tc := range []struct {
		name   string
		hdr    []string
		status int
	}{
		{"59 KiB", []string{"X-Big", strings.Repeat("a", 59<<10)}, 200},
		{"70 KB", []string{"X-Big", strings.Repeat("a", 70_000)}, 431},
		{"150 KB", []string{"X-Big", strings.Repeat("a", 150_000)}, 431},
		{"100 headers", manyHeaders(97), 200},
		{"101 headers", manyHeaders(98), 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := bs[0].served.Load() + bs[1].served.Load()
			resp, _ := get(t, c, s, "/api/users", tc.hdr...)
			if resp.StatusCode != tc.status {
				t.Fatalf("got %d, want %d", resp.StatusCode, tc.status)
			}
			if served := bs[0].served.Load() + bs[1].served.Load() - before; tc.status == 431 && served != 0 {
				t.Fatal("a refused request reached an upstream")
			}
		})
	}
}

// manyHeaders returns n distinct headers; with Host, Go's User-Agent and Accept-Encoding the
// request carries n+3.
func manyHeaders(n int) []string {
	var h []string
	for i := range n {
		h = append(h, fmt.Sprintf("X-H%d", i), "v")
	}
	return h
}

// TestHTTP2Defaults: like Envoy (2^31-1 streams per connection), envoysim takes 300
// concurrent streams on one HTTP/2 connection; Go's default (250) would make the client open a
// second one.
func TestHTTP2Defaults(t *testing.T) {
	s, bs := flowServer(t)
	for _, b := range bs {
		b.delay.Store(int64(100 * time.Millisecond)) // holds every stream open at once
	}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	c := &http.Client{Transport: &http.Transport{Protocols: &protos}}
	if resp, _ := get(t, c, s, "/api/users"); resp.ProtoMajor != 2 { // opens the one connection
		t.Fatalf("got %s", resp.Proto)
	}
	const n = 300
	errs := make(chan error, n)
	for range n {
		go func() {
			resp, err := c.Get("http://" + s.ListenAddr() + "/api/users")
			if err != nil {
				errs <- err
				return
			}
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				errs <- err
				return
			}
			if err := resp.Body.Close(); err != nil {
				errs <- err
				return
			}
			if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
				errs <- fmt.Errorf("got %s %d", resp.Proto, resp.StatusCode)
				return
			}
			errs <- nil
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := statsOf(t, s)["http.gateway.downstream_cx_total"]; got != 1 {
		t.Fatalf("%d concurrent streams took %d connections, want 1", n, got)
	}
}

// TestRetryBufferOverrunDuringBackoff: when the request body outgrows the buffer limit while
// the router waits to retry, there is nothing left to send again: Envoy gives up with 507.
// The first attempt fails to connect before the body has come; the rest of the body (more
// than the limit) arrives during the back-off, made exact (1 s) for the test.
func TestRetryBufferOverrunDuringBackoff(t *testing.T) {
	jitter := retryJitter
	retryJitter = func(n int64) int64 { return n - 1 }
	t.Cleanup(func() { retryJitter = jitter })

	cfg := fixture(t)
	uc := cfg.cluster("users")
	uc.Endpoints = []Endpoint{{Host: "127.0.0.1", Port: closedPort(t)}}
	uc.HealthCheck, uc.Outlier = nil, nil
	r := cfg.route("users")
	r.Timeout = 30 * time.Second
	r.Retry.BackoffBase, r.Retry.BackoffMax = time.Second, time.Second
	s := startServer(t, cfg, 1, newFakeFilter())

	c, err := net.Dial("tcp", s.ListenAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }() // the test is over: a close error changes nothing
	first := bytes.Repeat([]byte("a"), 1000)
	rest := bytes.Repeat([]byte("b"), defaultBufferLimit+1000)
	head := fmt.Sprintf("POST /api/users HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(first)+len(rest))
	if _, err := io.WriteString(c, head+string(first)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the first attempt to fail and a retry to be decided", func() bool {
		return statsOf(t, s)["cluster.users.upstream_rq_retry"] == 1
	})
	go func() { _, _ = c.Write(rest) }() // the proxy may stop reading once it has answered
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusInsufficientStorage || string(b) != replyBufferOverrun {
		t.Fatalf("got %d %q, want 507 %q", resp.StatusCode, b, replyBufferOverrun)
	}
	st := statsOf(t, s)
	if st["cluster.users.retry_or_shadow_abandoned"] != 1 || st["cluster.users.upstream_rq_retry"] != 1 {
		t.Fatalf("retry_or_shadow_abandoned %d (want 1), upstream_rq_retry %d (want 1: no second attempt)",
			st["cluster.users.retry_or_shadow_abandoned"], st["cluster.users.upstream_rq_retry"])
	}
}
