// Command benchglobal measures what a global rule costs a request, in the
// `make bench` run: one data-plane replica with the compiled filter, a warm
// envoyproxy/ratelimit on localhost counting in a local Redis, and three paths
// measured in the same run, interleaved:
//
//	/none    no rule governs it (the data plane and the backend alone)
//	/local   a local token bucket, never empty (the baseline of the tier below)
//	/global  a global rule whose budget is never reached: every request is one
//	         ShouldRateLimit call answered OK
//
// It prints a Markdown table: p50 and p99 latency of sequential requests on
// one keep-alive connection, the global rule's added latency over /local and
// /none, and requests/s through the replica with several clients. The data
// plane is Envoy when installed, else envoysim, and the table says which: the
// figures are this machine's, for comparison within the run.
//
//	benchglobal [-n 2000] [-duration 3s] [-clients 8] [-out build/benchglobal]
//
// It exits 1 when redis-server or the ratelimit executable is missing, saying
// what to install; `make bench` then reports the global part as not measured.
// Ctrl-C (or SIGTERM) stops the run: the replica, the service and Redis are
// stopped before it exits 1.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tokengate/tokengate/e2e/harness"
	"github.com/tokengate/tokengate/envoy"
)

var paths = []string{"/none", "/local", "/global"}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("benchglobal", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 2000, "sequential requests per path for the latency percentiles")
	duration := fs.Duration("duration", 3*time.Second, "throughput run per path")
	clients := fs.Int("clients", 8, "concurrent keep-alive clients in the throughput run")
	out := fs.String("out", "build/benchglobal", "directory for the bootstrap, the tools and the logs")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "benchglobal: "+format+"\n", a...)
		return 1
	}
	if *n < 100 || *clients < 1 || *duration < 100*time.Millisecond {
		return fail("want -n >= 100, -clients >= 1, -duration >= 100ms")
	}
	root, err := harness.ModuleRoot()
	if err != nil {
		return fail("%v", err)
	}
	parts, err := harness.FindGlobalParts(root)
	if err != nil {
		return fail("%v", err)
	}
	wasm := os.Getenv("TOKENGATE_WASM")
	if wasm == "" {
		wasm = filepath.Join(root, "build", "tokengate.wasm")
	}
	if _, err := os.Stat(wasm); err != nil {
		return fail("the filter module: %v (run make wasm)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// failRun is fail for what the run itself meets: an interruption says so.
	failRun := func(format string, a ...any) int {
		if ctx.Err() != nil {
			return fail("stopped: %v", context.Cause(ctx))
		}
		return fail(format, a...)
	}
	w, err := harness.OpenWorkdir(ctx, root, *out, "benchglobal.log")
	if err != nil {
		return fail("%v", err)
	}
	defer w.Close()
	spec, err := benchSpec(wasm)
	if err != nil {
		return fail("%v", err)
	}
	f, err := harness.StartFleet(ctx, spec, harness.FleetOptions{Options: w.Options, Replicas: 1, Parts: parts})
	if err != nil {
		return failRun("%v", err)
	}
	defer f.Stop()
	base := "http://" + f.Replicas[0].Listen

	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: *clients}}
	// Warm up: connections, the VM, the service's gRPC connection, Redis keys.
	for i := 0; i < 200; i++ {
		for _, p := range paths {
			if _, err := get(ctx, c, base+p); err != nil {
				return failRun("warm-up %s: %v", p, err)
			}
		}
	}
	lat := map[string][]time.Duration{}
	for i := 0; i < *n; i++ {
		for _, p := range paths {
			d, err := get(ctx, c, base+p)
			if err != nil {
				return failRun("%s: %v", p, err)
			}
			lat[p] = append(lat[p], d)
		}
	}
	rps := map[string]float64{}
	for _, p := range paths {
		r, err := throughput(ctx, c, base+p, *clients, *duration)
		if err != nil {
			return failRun("%s: %v", p, err)
		}
		rps[p] = r
	}
	printTable(stdout, w.Dataplane, *n, *clients, *duration, lat, rps)
	return 0
}

// benchSpec is one replica with a route for every path, a local rule on
// /local and a global rule on /global, neither ever refusing.
func benchSpec(wasm string) (*envoy.Spec, error) {
	ports, err := harness.FreePorts(3)
	if err != nil {
		return nil, err
	}
	doc := fmt.Sprintf(`listen: 127.0.0.1:%d
admin: 127.0.0.1:%d
concurrency: 1
wasm: %s
filter:
  rules:
    - {name: local, match: {path_prefix: /local}, key: [remote_address], capacity: 1000000000, refill: 1000000000, interval: 1s}
    - {name: global, match: {path_prefix: /global}, key: [remote_address], global: {requests_per_unit: 4000000000, unit: minute}}
  rate_limit_service: {cluster: ratelimit, domain: bench, timeout: 1s, failure_mode: deny}
rate_limit_service: {backends: ["127.0.0.1:1"]}
routes:
  - {name: all, prefix: /, backends: ["127.0.0.1:%d"], retries: 0, timeout: 5s}
`, ports[0], ports[1], wasm, ports[2])
	return envoy.ParseSpec([]byte(doc))
}

// get sends one request and returns its latency; anything but 200 is an
// error (a refusal or the failure mode would measure something else).
func get(ctx context.Context, c *http.Client, url string) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	begin := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(begin)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	return d, nil
}

// throughput runs clients loops of requests for d and returns requests/s.
func throughput(ctx context.Context, c *http.Client, url string, clients int, d time.Duration) (float64, error) {
	var done atomic.Int64
	var firstErr atomic.Value
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	begin := time.Now()
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if _, err := get(ctx, c, url); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return 0, err
	}
	return float64(done.Load()) / time.Since(begin).Seconds(), nil
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(p*float64(len(s)-1))]
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

func printTable(w io.Writer, dp harness.Dataplane, n, clients int, d time.Duration,
	lat map[string][]time.Duration, rps map[string]float64) {
	fmt.Fprintf(w, "\n## Global rule, warm rate limit service (envoyproxy/ratelimit + Redis on localhost)\n\n")
	fmt.Fprintf(w, "CPU: %s. %s.\n", cpuModel(), dp.Describe())
	fmt.Fprintf(w, "Latency: %d sequential requests per path on one keep-alive connection, paths interleaved. "+
		"Throughput: %d keep-alive clients for %v per path. One replica with one worker.\n\n", n, clients, d)
	fmt.Fprintln(w, "| path | p50 | p99 | requests/s |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, p := range paths {
		fmt.Fprintf(w, "| %s | %s | %s | %.0f |\n", p, us(percentile(lat[p], .5)), us(percentile(lat[p], .99)), rps[p])
	}
	g50, g99 := percentile(lat["/global"], .5), percentile(lat["/global"], .99)
	fmt.Fprintf(w, "\nAdded by the global rule: over /local p50 %s, p99 %s; over /none p50 %s, p99 %s.\n",
		us(g50-percentile(lat["/local"], .5)), us(g99-percentile(lat["/local"], .99)),
		us(g50-percentile(lat["/none"], .5)), us(g99-percentile(lat["/none"], .99)))
}
