package envoysim

import (
	"context"
	"errors"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tokengate/tokengate/internal/wasmhost"
)

// grpcClient is the wasm filter's gRPC transport: Envoy's async gRPC client to a cluster of
// the bootstrap. Each call picks a host of the cluster like the router does (round robin over
// the available hosts), then runs over one HTTP/2 connection per host and authority, kept
// for the server's life, with the call's timeout as its deadline. Messages pass through as
// bytes: the guest encodes and decodes them. Safe for concurrent use.
//
// Differences from Envoy: no retries, no per-call stats, and the cluster's circuit breakers
// and outlier detection do not see these calls.
type grpcClient struct {
	s     *Server // its ctx, set by Start, ends calls in flight at shutdown
	mu    sync.Mutex
	conns map[[2]string]*grpc.ClientConn // by host address and authority
}

func newGrpcClient(s *Server) *grpcClient {
	return &grpcClient{s: s, conns: map[[2]string]*grpc.ClientConn{}}
}

func (g *grpcClient) HasCluster(name string) bool { return g.s.clusters[name] != nil }

// Start runs call on its own goroutine and reports through done. The returned cancel ends it.
func (g *grpcClient) Start(call wasmhost.GrpcCall, done func(wasmhost.GrpcReply)) func() {
	base := g.s.ctx
	if base == nil {
		base = context.Background()
	}
	var ctx context.Context
	var cancel context.CancelFunc
	if call.Timeout > 0 {
		ctx, cancel = context.WithTimeout(base, call.Timeout)
	} else {
		ctx, cancel = context.WithCancel(base)
	}
	go func() {
		defer cancel()
		done(g.call(ctx, call))
	}()
	return cancel
}

func (g *grpcClient) call(ctx context.Context, call wasmhost.GrpcCall) wasmhost.GrpcReply {
	c := g.s.clusters[call.Cluster]
	h := c.pick(0, nil, 0)
	if h == nil {
		return wasmhost.GrpcReply{Status: 14, Detail: "no healthy upstream"}
	}
	authority := call.Authority
	if authority == "" {
		authority = call.Cluster
	}
	conn, err := g.conn(h.addr, authority)
	if err != nil {
		return wasmhost.GrpcReply{Status: 14, Detail: err.Error()}
	}
	for _, kv := range call.Metadata {
		ctx = metadata.AppendToOutgoingContext(ctx, kv[0], kv[1])
	}
	var resp []byte
	err = conn.Invoke(ctx, "/"+call.Service+"/"+call.Method, call.Message, &resp, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		st := status.Convert(err)
		return wasmhost.GrpcReply{Status: uint32(st.Code()), Detail: st.Message()}
	}
	return wasmhost.GrpcReply{Message: resp}
}

func (g *grpcClient) conn(addr, authority string) (*grpc.ClientConn, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	key := [2]string{addr, authority}
	if c := g.conns[key]; c != nil {
		return c, nil
	}
	c, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithAuthority(authority), grpc.WithConnectParams(reconnect))
	if err != nil {
		return nil, err
	}
	g.conns[key] = c
	return c, nil
}

// reconnect is how soon a connection that failed is tried again. Envoy's connection pool
// opens a new connection for the next request after a failure, with no back-off; gRPC-Go's
// default (1s, growing 1.6x to 120s) would keep failing calls fast with UNAVAILABLE for up
// to two minutes after the service is back. A fixed 100ms keeps a dead host from being
// dialled in a busy loop and costs at most 100ms once it is back.
var reconnect = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1, MaxDelay: 100 * time.Millisecond},
	MinConnectTimeout: time.Second,
}

// close closes every connection.
func (g *grpcClient) close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var errs []error
	for k, c := range g.conns {
		errs = append(errs, c.Close())
		delete(g.conns, k)
	}
	return errors.Join(errs...)
}

// rawCodec passes messages through as bytes. It is named "proto" so the content type is
// application/grpc+proto, as Envoy's client sends.
type rawCodec struct{}

var errRawCodec = errors.New("envoysim: grpc messages must be []byte")

func (rawCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.([]byte); ok {
		return b, nil
	}
	return nil, errRawCodec
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	p, ok := v.(*[]byte)
	if !ok {
		return errRawCodec
	}
	*p = append((*p)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }

var _ encoding.Codec = rawCodec{}
