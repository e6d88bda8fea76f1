// Command backend is the sample upstream server of tokengate's end-to-end tests and of
// `make run`: it names itself in an X-Served-By header and echoes each request as JSON.
//
//	go run ./e2e/backend -addr 127.0.0.1:8081 -name b1
//
// Endpoints:
//
//	GET  /healthz                    200 "ok", or 503 while told to fail
//	POST /admin/health?fail=1        fail health checks (fail=0: pass again)
//	POST /admin/errors?status=503    answer every echo request with that status
//	                                 (&count=N: only the next N; status=0: stop)
//	GET  /admin/stats                requests served, as JSON
//	*    anything else               echo: method, path, host, selected headers, body size;
//	                                 ?status=NNN answers with that status, ?delay=250ms waits
//
// It stops on SIGINT or SIGTERM.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// echoed are the request headers the echo shows.
var echoed = []string{
	"X-Forwarded-For", "X-Forwarded-Proto", "X-Request-Id", "X-Api-Key", "User-Agent",
	"X-Envoy-Expected-Rq-Timeout-Ms", "Content-Type",
}

// backend is the server's state. Safe for concurrent use.
type backend struct {
	name        string
	failHealth  atomic.Bool
	requests    atomic.Int64 // echo requests served
	healthCalls atomic.Int64

	mu         sync.Mutex
	errStatus  int // 0: none
	errCount   int // remaining forced errors; -1: until cleared
	errAnswers int64
}

// Echo is the JSON body of an echo response.
type Echo struct {
	ServedBy  string            `json:"served_by"`
	Method    string            `json:"method"`
	Path      string            `json:"path"`
	Host      string            `json:"host"`
	Headers   map[string]string `json:"headers"`
	BodyBytes int64             `json:"body_bytes"`
}

func newHandler(name string) (http.Handler, *backend) {
	b := &backend{name: name}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", b.health)
	mux.HandleFunc("/admin/health", b.adminHealth)
	mux.HandleFunc("/admin/errors", b.adminErrors)
	mux.HandleFunc("/admin/stats", b.adminStats)
	mux.HandleFunc("/", b.echo)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Served-By", name)
		mux.ServeHTTP(w, r)
	}), b
}

func (b *backend) health(w http.ResponseWriter, r *http.Request) {
	b.healthCalls.Add(1)
	if b.failHealth.Load() {
		http.Error(w, "failing (told to by /admin/health)", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

func post(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPost {
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return false
	}
	return true
}

func (b *backend) adminHealth(w http.ResponseWriter, r *http.Request) {
	if !post(w, r) {
		return
	}
	fail := r.URL.Query().Get("fail")
	if fail != "0" && fail != "1" {
		http.Error(w, "fail must be 0 or 1", http.StatusBadRequest)
		return
	}
	b.failHealth.Store(fail == "1")
	fmt.Fprintf(w, "%s: health check failing=%v\n", b.name, fail == "1")
}

func (b *backend) adminErrors(w http.ResponseWriter, r *http.Request) {
	if !post(w, r) {
		return
	}
	q := r.URL.Query()
	status, err := strconv.Atoi(q.Get("status"))
	if err != nil || status != 0 && (status < 200 || status > 599) {
		http.Error(w, "status must be 0 (stop) or an HTTP status", http.StatusBadRequest)
		return
	}
	count := -1
	if c := q.Get("count"); c != "" {
		if count, err = strconv.Atoi(c); err != nil || count < 1 {
			http.Error(w, "count must be >= 1", http.StatusBadRequest)
			return
		}
	}
	b.mu.Lock()
	b.errStatus, b.errCount = status, count
	b.mu.Unlock()
	fmt.Fprintf(w, "%s: forced status=%d count=%d\n", b.name, status, count)
}

func (b *backend) adminStats(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	errAnswers := b.errAnswers
	b.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{ // a failed write means the client left
		"name": b.name, "requests": b.requests.Load(), "health_checks": b.healthCalls.Load(),
		"forced_errors": errAnswers, "failing_health": b.failHealth.Load(),
	})
}

// forced returns the status an echo request must get instead, 0 for none.
func (b *backend) forced() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.errStatus == 0 || b.errCount == 0 {
		return 0
	}
	if b.errCount > 0 {
		b.errCount--
	}
	b.errAnswers++
	return b.errStatus
}

func (b *backend) echo(w http.ResponseWriter, r *http.Request) {
	b.requests.Add(1)
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil {
		http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	q := r.URL.Query()
	if d := q.Get("delay"); d != "" {
		dur, err := time.ParseDuration(d)
		if err != nil {
			http.Error(w, "delay: "+err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case <-time.After(dur):
		case <-r.Context().Done():
			return
		}
	}
	status := http.StatusOK
	if s := q.Get("status"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 200 || v > 599 {
			http.Error(w, "status must be an HTTP status", http.StatusBadRequest)
			return
		}
		status = v
	}
	if f := b.forced(); f != 0 {
		status = f
	}
	e := Echo{ServedBy: b.name, Method: r.Method, Path: r.URL.RequestURI(), Host: r.Host, Headers: map[string]string{}, BodyBytes: n}
	for _, h := range echoed {
		if v := r.Header.Get(h); v != "" {
			e.Headers[http.CanonicalHeaderKey(h)] = v
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(e) // a failed write means the client left
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "listen address")
	name := flag.String("name", "b1", "name, sent in X-Served-By")
	flag.Parse()
	log.SetPrefix("backend " + *name + ": ")
	log.SetFlags(0)
	h, _ := newHandler(*name)
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Printf("shutdown: %v", err)
		}
	}()
	log.Printf("listening on %s", l.Addr())
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
