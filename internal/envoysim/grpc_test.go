package envoysim

import (
	"context"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/tokengate/tokengate/internal/wasmhost"
)

// testRLS is a rate limit service: OVER_LIMIT for the domain "full", OK otherwise; it
// sleeps before answering the domain "slow", and records the authority it saw.
type testRLS struct {
	rlsv3.UnimplementedRateLimitServiceServer
	authority chan string
}

func (r *testRLS) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		select {
		case r.authority <- md.Get(":authority")[0]:
		default:
		}
	}
	if req.Domain == "slow" {
		select {
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	code := rlsv3.RateLimitResponse_OK
	if req.Domain == "full" {
		code = rlsv3.RateLimitResponse_OVER_LIMIT
	}
	return &rlsv3.RateLimitResponse{OverallCode: code}, nil
}

func startRLS(t *testing.T) (*testRLS, int) {
	t.Helper()
	rls, port, _ := serveRLS(t, "127.0.0.1:0") // stopped at the test's end
	return rls, port
}

// serveRLS serves a testRLS on addr until the test ends or stop is called.
func serveRLS(t *testing.T, addr string) (rls *testRLS, port int, stop func()) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	rls = &testRLS{authority: make(chan string, 8)}
	rlsv3.RegisterRateLimitServiceServer(srv, rls)
	go func() {
		if err := srv.Serve(l); err != nil {
			t.Errorf("rate limit service: %v", err)
		}
	}()
	t.Cleanup(srv.Stop)
	return rls, l.Addr().(*net.TCPAddr).Port, srv.Stop
}

// TestGrpcReconnect: calls to a service that went away fail with UNAVAILABLE, and
// succeed again within a fraction of a second of its return, however long it was gone
// (like Envoy's connection pool, not gRPC-Go's growing back-off).
func TestGrpcReconnect(t *testing.T) {
	_, port, stop := serveRLS(t, "127.0.0.1:0")
	cfg := fixture(t)
	cfg.Clusters = append(cfg.Clusters,
		ClusterConfig{Name: "ratelimit", Endpoints: []Endpoint{{Host: "127.0.0.1", Port: port}}, ConnectTimeout: time.Second})
	s := startServer(t, cfg, 1, newFakeFilter())
	call := func() uint32 {
		msg, err := proto.Marshal(&rlsv3.RateLimitRequest{Domain: "d"})
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan wasmhost.GrpcReply, 1)
		s.grpc.Start(wasmhost.GrpcCall{Cluster: "ratelimit", Service: "envoy.service.ratelimit.v3.RateLimitService",
			Method: "ShouldRateLimit", Message: msg, Timeout: time.Second}, func(r wasmhost.GrpcReply) { got <- r })
		return (<-got).Status
	}
	if st := call(); st != 0 {
		t.Fatalf("first call: status %d", st)
	}
	stop()
	// Gone for 3s with calls failing meanwhile: gRPC-Go's default back-off would now be
	// several seconds.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if st := call(); st != 14 {
			t.Fatalf("call to a stopped service: status %d, want 14 (UNAVAILABLE)", st)
		}
	}
	serveRLS(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	back := time.Now()
	for call() != 0 {
		if time.Since(back) > 500*time.Millisecond {
			t.Fatalf("calls still fail %v after the service is back", time.Since(back))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestGrpcTransport: the wasm filter's calls reach a real gRPC server through the
// bootstrap's cluster, with the authority asked for and the call's timeout.
func TestGrpcTransport(t *testing.T) {
	rls, port := startRLS(t)
	cfg := fixture(t)
	cfg.Clusters = append(cfg.Clusters,
		ClusterConfig{Name: "ratelimit", Endpoints: []Endpoint{{Host: "127.0.0.1", Port: port}}, ConnectTimeout: time.Second},
		ClusterConfig{Name: "down", Endpoints: []Endpoint{{Host: "127.0.0.1", Port: closedPort(t)}}, ConnectTimeout: time.Second})
	s := startServer(t, cfg, 1, newFakeFilter())
	g := s.grpc
	if !g.HasCluster("ratelimit") || g.HasCluster("nowhere") {
		t.Fatal("HasCluster")
	}
	call := func(cluster, domain string, timeout time.Duration) wasmhost.GrpcReply {
		msg, err := proto.Marshal(&rlsv3.RateLimitRequest{Domain: domain, Descriptors: []*commonv3.RateLimitDescriptor{
			{Entries: []*commonv3.RateLimitDescriptor_Entry{{Key: "rule", Value: "r"}}}}})
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan wasmhost.GrpcReply, 1)
		g.Start(wasmhost.GrpcCall{Cluster: cluster, Authority: "rls.test", Service: "envoy.service.ratelimit.v3.RateLimitService",
			Method: "ShouldRateLimit", Message: msg, Timeout: timeout}, func(r wasmhost.GrpcReply) { got <- r })
		select {
		case r := <-got:
			return r
		case <-time.After(5 * time.Second):
			t.Fatal("no reply in 5s")
		}
		return wasmhost.GrpcReply{}
	}
	for _, tc := range []struct {
		name, cluster, domain string
		status                uint32
		code                  rlsv3.RateLimitResponse_Code
	}{
		{"ok", "ratelimit", "d", 0, rlsv3.RateLimitResponse_OK},
		{"over limit", "ratelimit", "full", 0, rlsv3.RateLimitResponse_OVER_LIMIT},
		{"timeout", "ratelimit", "slow", 4, 0},
		{"connection refused", "down", "d", 14, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := call(tc.cluster, tc.domain, 300*time.Millisecond)
			if r.Status != tc.status {
				t.Fatalf("status %d (%s), want %d", r.Status, r.Detail, tc.status)
			}
			if tc.status != 0 {
				return
			}
			var resp rlsv3.RateLimitResponse
			if err := proto.Unmarshal(r.Message, &resp); err != nil || resp.OverallCode != tc.code {
				t.Fatalf("answer %v %v", &resp, err)
			}
		})
	}
	if a := <-rls.authority; a != "rls.test" {
		t.Errorf("authority %q", a)
	}
}

// watchedCtx is a server context that counts the contexts derived from it and not yet
// cancelled (the context package registers each through AfterFunc).
type watchedCtx struct {
	context.Context // Background: never done
	done            chan struct{}
	live            atomic.Int64
}

func (c *watchedCtx) Done() <-chan struct{} { return c.done }

func (c *watchedCtx) AfterFunc(func()) (stop func() bool) {
	c.live.Add(1)
	var once sync.Once
	return func() bool {
		stopped := false
		once.Do(func() { c.live.Add(-1); stopped = true })
		return stopped
	}
}

// TestGrpcCallReleasesContext: a call with a timeout leaves nothing attached to the server's
// context once it is over (each call used to leak a context until shutdown).
func TestGrpcCallReleasesContext(t *testing.T) {
	cfg := fixture(t)
	cfg.Clusters = append(cfg.Clusters,
		ClusterConfig{Name: "down", Endpoints: []Endpoint{{Host: "127.0.0.1", Port: closedPort(t)}}, ConnectTimeout: time.Second})
	s := startServer(t, cfg, 1, newFakeFilter())
	base := &watchedCtx{Context: context.Background(), done: make(chan struct{})}
	g := newGrpcClient(&Server{clusters: s.clusters, ctx: base})
	t.Cleanup(func() { _ = g.close() })
	for i := 0; i < 3; i++ {
		got := make(chan wasmhost.GrpcReply, 1)
		g.Start(wasmhost.GrpcCall{Cluster: "down", Service: "s", Method: "m", Timeout: time.Second},
			func(r wasmhost.GrpcReply) { got <- r })
		if r := <-got; r.Status != 14 {
			t.Fatalf("status %d (%s), want 14", r.Status, r.Detail)
		}
	}
	for end := time.Now().Add(time.Second); base.live.Load() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%d contexts still attached to the server's context after the calls ended", base.live.Load())
		}
	}
}
