package envoysim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// serverName is the server header envoysim puts on responses (Envoy puts "envoy"), so that
// nobody mistakes it for Envoy.
const serverName = "envoysim"

// Banner is the line envoysim logs at start-up and shows on its admin page.
const Banner = "envoysim: a test and development stand-in for Envoy, NOT a production proxy (use Envoy or Istio in production)"

// Options tune a Server.
type Options struct {
	// Concurrency is the number of workers (Envoy's --concurrency). 0 means one per CPU,
	// like Envoy.
	Concurrency int
	// Filter builds the wasm filter chain; nil runs the bootstrap's .wasm through wasmhost.
	Filter FilterFactory
	// Logger receives envoysim's log; nil logs to stderr.
	Logger *slog.Logger
	// ServiceNode is Envoy's --service-node (the node id; the bootstrap sets none). The admin
	// /server_info shows it, so a launcher can tell its own process from another one.
	ServiceNode string
}

// Server is a running envoysim: a listener with its filter chain and router, its clusters
// and the admin listener. Create it with New, then Start it; Shutdown stops it.
type Server struct {
	cfg        *Config
	opts       Options
	log        *slog.Logger
	filter     Filter
	clusters   map[string]*cluster
	grpc       *grpcClient // the wasm filter's gRPC calls to the clusters
	stats      *stats
	httpPrefix string

	ctx    context.Context
	cancel context.CancelFunc

	listener, adminListener net.Listener
	srv, adminSrv           *http.Server

	connSeq    atomic.Uint64
	nextWorker atomic.Uint64
	ready      chan struct{}
	quit       chan struct{}
	quitOnce   sync.Once
}

// New builds a Server from a Config: it starts the filter (the wasm canary runs here, so a bad
// filter configuration fails New) but does not listen yet.
func New(ctx context.Context, cfg *Config, opts Options) (*Server, error) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = runtime.NumCPU()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	s := &Server{
		cfg:        cfg,
		opts:       opts,
		log:        opts.Logger,
		clusters:   map[string]*cluster{},
		stats:      newStats(),
		httpPrefix: "http." + cfg.StatPrefix + ".",
		ready:      make(chan struct{}),
		quit:       make(chan struct{}),
	}
	for _, cc := range cfg.Clusters {
		s.clusters[cc.Name] = newCluster(cc, opts.Concurrency, s.stats, s.log)
	}
	s.grpc = newGrpcClient(s)
	if cfg.Wasm != nil {
		factory := opts.Filter
		if factory == nil {
			factory = defaultFilter
		}
		if factory == nil {
			return nil, errors.New("envoysim: no wasm filter factory (this build has no wasm host)")
		}
		wc := *cfg.Wasm
		wc.Grpc = s.grpc
		wc.NodeID = opts.ServiceNode
		f, err := factory(ctx, wc, opts.Concurrency)
		if err != nil {
			return nil, fmt.Errorf("envoysim: wasm filter %q: %w", cfg.Wasm.Name, err)
		}
		s.filter = f
	}
	for _, n := range []string{"downstream_rq_total", "downstream_cx_total", "downstream_rq_2xx",
		"downstream_rq_4xx", "downstream_rq_5xx", "no_route", "downstream_rq_failed_path_normalization"} {
		s.stats.counter(s.httpPrefix + n)
	}
	s.stats.gauge(s.httpPrefix + "downstream_cx_active")
	s.stats.gauge("server.concurrency").Store(int64(opts.Concurrency))
	s.stats.gauge("server.live")
	return s, nil
}

// Start listens on the listener and admin addresses and starts the clusters. The Server is
// ready (Ready) once every cluster has finished its first round of health checks.
func (s *Server) Start() error {
	s.ctx, s.cancel = context.WithCancel(context.Background())
	l, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("envoysim: listener: %w", err)
	}
	s.listener = l
	if s.cfg.Admin != "" {
		al, err := net.Listen("tcp", s.cfg.Admin)
		if err != nil {
			_ = l.Close()
			return fmt.Errorf("envoysim: admin: %w", err)
		}
		s.adminListener = al
		s.adminSrv = &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = s.adminSrv.Serve(al) }()
	}
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 60 * time.Second, // known difference: Envoy sets no such limit
		IdleTimeout:       time.Hour,        // Envoy's default idle_timeout
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			id := s.connSeq.Add(1)
			worker := int((s.nextWorker.Add(1) - 1) % uint64(s.opts.Concurrency))
			return context.WithValue(ctx, connKey{}, &conn{id: id, worker: worker, local: c.LocalAddr().String()})
		},
		ConnState: func(_ net.Conn, state http.ConnState) {
			switch state {
			case http.StateNew:
				s.stats.inc(s.httpPrefix + "downstream_cx_total")
				s.stats.gauge(s.httpPrefix + "downstream_cx_active").Add(1)
			case http.StateClosed, http.StateHijacked:
				s.stats.gauge(s.httpPrefix + "downstream_cx_active").Add(-1)
			}
		},
	}
	var protos http.Protocols
	protos.SetHTTP1(true) // codec_type AUTO, Envoy's default
	protos.SetUnencryptedHTTP2(true)
	s.srv.Protocols = &protos
	// Envoy's HTTP/2 defaults (http2_protocol_options): 2^31-1 concurrent streams, 256 MiB
	// stream and connection windows. Go's own would refuse streams above 250 per connection.
	s.srv.HTTP2 = &http.HTTP2Config{
		MaxConcurrentStreams:          1<<31 - 1,
		MaxReceiveBufferPerConnection: 256 << 20,
		MaxReceiveBufferPerStream:     256 << 20,
	}
	for _, c := range s.clusters {
		c.start(s.ctx)
	}
	go func() {
		for _, c := range s.clusters {
			select {
			case <-c.ready:
			case <-s.ctx.Done():
				return
			}
		}
		s.stats.gauge("server.live").Store(1)
		close(s.ready)
		s.log.Info("all clusters initialized; server LIVE")
	}()
	go func() { _ = s.srv.Serve(l) }()
	s.log.Info(Banner, "listener", l.Addr().String(), "admin", s.AdminAddr(), "concurrency", s.opts.Concurrency)
	return nil
}

// ListenAddr is the listener's bound address.
func (s *Server) ListenAddr() string { return s.listener.Addr().String() }

// AdminAddr is the admin listener's bound address, "" when there is none.
func (s *Server) AdminAddr() string {
	if s.adminListener == nil {
		return ""
	}
	return s.adminListener.Addr().String()
}

// Ready is closed once the server is LIVE.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Quit is closed when an admin client asks the server to stop (POST /quitquitquit).
func (s *Server) Quit() <-chan struct{} { return s.quit }

// Shutdown stops listening, waits (until ctx ends) for requests in flight, stops health checks
// and closes the filter.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	if s.srv != nil {
		errs = append(errs, s.srv.Shutdown(ctx))
	}
	if s.adminSrv != nil {
		errs = append(errs, s.adminSrv.Shutdown(ctx))
	}
	if s.cancel != nil {
		s.cancel()
	}
	for _, c := range s.clusters {
		c.close()
	}
	if s.filter != nil {
		errs = append(errs, s.filter.Close(ctx))
	}
	errs = append(errs, s.grpc.close())
	return errors.Join(errs...)
}
