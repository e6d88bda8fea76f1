package envoysim

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// host is one upstream endpoint of a cluster. Its health fields are guarded by mu.
type host struct {
	addr string // "ip:port"

	mu          sync.Mutex
	hcHealthy   bool // passes active health checking (true when the cluster has none)
	hcPending   bool // never checked yet: one success is enough
	hcSuccesses int  // consecutive, while unhealthy
	hcFailures  int  // consecutive, while healthy
	ejected     bool // by outlier detection
	ejectedAt   time.Time
	ejections   int // times ejected, for the ejection time
	cons5xx     int
	consGateway int
	ctx         context.Context    // the host's life: its health check loop runs until it ends
	stop        context.CancelFunc // ends ctx; both are set before the host is published

	rqTotal atomic.Int64
}

func (h *host) available() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hcHealthy && !h.ejected
}

// cluster is an upstream cluster: its hosts, one round-robin balancer per worker, health
// checking, outlier detection and circuit breakers. Safe for concurrent use.
type cluster struct {
	cfg    ClusterConfig
	stats  *stats
	prefix string // "cluster.<name>."
	log    *slog.Logger

	mu        sync.RWMutex
	hosts     []*host
	available []*host // healthy and not ejected
	panic     bool    // too few available hosts: balance over all

	rr []atomic.Uint64 // round-robin index per worker

	transport *http.Transport // data plane
	hcClient  *http.Client    // health checks, on their own connections

	traffic        atomic.Bool // the cluster has had a data plane connection
	activeRequests atomic.Int64
	activeRetries  atomic.Int64

	ready     chan struct{} // closed once every initial host has had its first health check
	readyOnce sync.Once
	pending   sync.WaitGroup
}

func newCluster(cfg ClusterConfig, workers int, st *stats, log *slog.Logger) *cluster {
	c := &cluster{
		cfg:    cfg,
		stats:  st,
		prefix: "cluster." + cfg.Name + ".",
		log:    log.With("cluster", cfg.Name),
		rr:     make([]atomic.Uint64, workers),
		ready:  make(chan struct{}),
	}
	dialer := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	c.transport = &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c.traffic.Store(true)
			c.stats.inc(c.prefix + "upstream_cx_total")
			conn, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				c.stats.inc(c.prefix + "upstream_cx_connect_fail")
				return nil, err
			}
			return conn, nil
		},
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     time.Hour,
		DisableCompression:  true,
	}
	hcDialer := &net.Dialer{Timeout: cfg.ConnectTimeout}
	c.hcClient = &http.Client{
		Transport: &http.Transport{DialContext: hcDialer.DialContext, DisableCompression: true, MaxIdleConnsPerHost: 4},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	for _, name := range []string{"upstream_rq_total", "upstream_rq_retry", "upstream_rq_retry_success",
		"upstream_rq_retry_overflow", "upstream_rq_timeout", "upstream_rq_per_try_timeout",
		"upstream_cx_total", "upstream_cx_connect_fail", "upstream_rq_pending_overflow", "lb_healthy_panic"} {
		st.counter(c.prefix + name)
	}
	st.gauge(c.prefix + "membership_healthy")
	st.gauge(c.prefix + "membership_total")
	if cfg.HealthCheck != nil {
		for _, name := range []string{"attempt", "success", "failure", "network_failure"} {
			st.counter(c.prefix + "health_check." + name)
		}
		st.gauge(c.prefix + "health_check.healthy")
	}
	if cfg.Outlier != nil {
		st.gauge(c.prefix + "outlier_detection.ejections_active")
		for _, name := range []string{"ejections_enforced_total", "ejections_overflow",
			"ejections_detected_consecutive_5xx", "ejections_enforced_consecutive_5xx",
			"ejections_detected_consecutive_gateway_failure", "ejections_enforced_consecutive_gateway_failure"} {
			st.counter(c.prefix + "outlier_detection." + name)
		}
	}
	return c
}

// start resolves the hosts and starts health checking and outlier sweeps; it returns at once.
// The cluster is ready (c.ready) once every initial host has been checked once.
func (c *cluster) start(ctx context.Context) {
	addrs := c.resolve(ctx)
	c.pending.Add(len(addrs))
	c.setHosts(ctx, addrs, true)
	go func() {
		c.pending.Wait()
		c.readyOnce.Do(func() { close(c.ready) })
	}()
	if c.cfg.DNS {
		go func() {
			t := time.NewTicker(dnsRefresh)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if addrs := c.resolve(ctx); len(addrs) > 0 {
						c.setHosts(ctx, addrs, false)
					}
				}
			}
		}()
	}
	if c.cfg.Outlier != nil {
		go c.outlierSweeps(ctx)
	}
}

// resolve returns the endpoint addresses, resolving names for STRICT_DNS.
func (c *cluster) resolve(ctx context.Context) []string {
	var out []string
	for _, e := range c.cfg.Endpoints {
		port := strconv.Itoa(e.Port)
		if !c.cfg.DNS || net.ParseIP(e.Host) != nil {
			out = append(out, net.JoinHostPort(e.Host, port))
			continue
		}
		ips, err := net.DefaultResolver.LookupIPAddr(ctx, e.Host)
		if err != nil {
			c.log.Warn("dns resolution failed", "host", e.Host, "err", err)
			continue
		}
		var v4, v6 []string
		for _, ip := range ips {
			if ip.IP.To4() != nil {
				v4 = append(v4, net.JoinHostPort(ip.IP.String(), port))
			} else {
				v6 = append(v6, net.JoinHostPort(ip.IP.String(), port))
			}
		}
		switch c.cfg.DNSFamily.String() {
		case "V4_ONLY":
			out = append(out, v4...)
		case "V6_ONLY":
			out = append(out, v6...)
		case "V4_PREFERRED":
			if len(v4) > 0 {
				out = append(out, v4...)
			} else {
				out = append(out, v6...)
			}
		case "ALL":
			out = append(append(out, v4...), v6...)
		default: // AUTO: IPv6 when there is one
			if len(v6) > 0 {
				out = append(out, v6...)
			} else {
				out = append(out, v4...)
			}
		}
	}
	return out
}

// setHosts replaces the host set with addrs, keeping the state of hosts that stay.
func (c *cluster) setHosts(ctx context.Context, addrs []string, initial bool) {
	c.mu.Lock()
	old := map[string]*host{}
	for _, h := range c.hosts {
		old[h.addr] = h
	}
	var hosts []*host
	var started []*host
	for _, a := range addrs {
		if h, ok := old[a]; ok {
			hosts = append(hosts, h)
			delete(old, a)
			continue
		}
		h := &host{addr: a, hcHealthy: c.cfg.HealthCheck == nil, hcPending: true}
		if c.cfg.HealthCheck != nil {
			h.ctx, h.stop = context.WithCancel(ctx)
		}
		hosts = append(hosts, h)
		started = append(started, h)
	}
	c.hosts = hosts
	c.mu.Unlock()
	for _, h := range old {
		if h.stop != nil {
			h.stop()
		}
	}
	for _, h := range started {
		if c.cfg.HealthCheck == nil {
			if initial {
				c.pending.Done()
			}
			continue
		}
		go c.healthCheckLoop(h.ctx, h, initial)
	}
	c.rebuild()
}

// rebuild recomputes the available hosts, panic mode and the membership gauges.
func (c *cluster) rebuild() {
	c.mu.Lock()
	defer c.mu.Unlock()
	var avail []*host
	healthy, ejected := 0, 0
	for _, h := range c.hosts {
		h.mu.Lock()
		if h.hcHealthy {
			healthy++
		}
		if h.ejected {
			ejected++
		}
		if h.hcHealthy && !h.ejected {
			avail = append(avail, h)
		}
		h.mu.Unlock()
	}
	c.available = avail
	c.panic = len(c.hosts) > 0 && float64(len(avail))*100/float64(len(c.hosts)) < c.cfg.PanicThreshold
	c.stats.gauge(c.prefix + "membership_healthy").Store(int64(len(avail)))
	c.stats.gauge(c.prefix + "membership_total").Store(int64(len(c.hosts)))
	if c.cfg.HealthCheck != nil {
		c.stats.gauge(c.prefix + "health_check.healthy").Store(int64(healthy))
	}
	if c.cfg.Outlier != nil {
		c.stats.gauge(c.prefix + "outlier_detection.ejections_active").Store(int64(ejected))
	}
}

// pick chooses a host round robin for worker, or nil when there is none. Hosts in exclude are
// skipped up to attempts times (the previous_hosts predicate); after that the last pick stands.
func (c *cluster) pick(worker int, exclude []*host, attempts int) *host {
	c.mu.RLock()
	set, panicMode := c.available, c.panic
	if panicMode {
		set = c.hosts
	}
	c.mu.RUnlock()
	if panicMode {
		c.stats.inc(c.prefix + "lb_healthy_panic")
	}
	if len(set) == 0 {
		return nil
	}
	rr := &c.rr[worker%len(c.rr)]
	for i := 0; ; i++ {
		h := set[(rr.Add(1)-1)%uint64(len(set))]
		if !slices.Contains(exclude, h) || i >= attempts {
			return h
		}
	}
}

// healthCheckLoop checks h until ctx ends, at Envoy's intervals.
func (c *cluster) healthCheckLoop(ctx context.Context, h *host, initial bool) {
	hc := c.cfg.HealthCheck
	for first := true; ; first = false {
		ok, network := c.check(ctx, h)
		if ctx.Err() != nil {
			if first && initial {
				c.pending.Done()
			}
			return
		}
		healthy, changed := c.healthResult(h, ok, network)
		if first && initial {
			c.pending.Done()
		}
		var d time.Duration
		switch {
		case !c.traffic.Load() && healthy:
			d = hc.NoTrafficHealthyInterval
		case !c.traffic.Load():
			d = hc.NoTrafficInterval
		case changed && healthy:
			d = hc.HealthyEdgeInterval
		case changed:
			d = hc.UnhealthyEdgeInterval
		case healthy:
			d = hc.Interval
		default:
			d = hc.UnhealthyInterval
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// check runs one HTTP health check; network reports a failure to get any response.
func (c *cluster) check(ctx context.Context, h *host) (ok, network bool) {
	hc := c.cfg.HealthCheck
	ctx, cancel := context.WithTimeout(ctx, hc.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.addr+hc.Path, nil)
	if err != nil {
		return false, true
	}
	req.Host = c.cfg.Name // Envoy's default health check authority
	req.Header.Set("User-Agent", "Envoy/HC")
	resp, err := c.hcClient.Do(req)
	if err != nil {
		return false, true
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	if resp.StatusCode == http.StatusOK { // Envoy's default expected_statuses
		return true, false
	}
	return false, false
}

// healthResult applies one health check result to h and reports its health afterwards and
// whether it changed.
func (c *cluster) healthResult(h *host, ok, network bool) (healthy, changed bool) {
	hc := c.cfg.HealthCheck
	c.stats.inc(c.prefix + "health_check.attempt")
	unejected := false
	h.mu.Lock()
	if ok {
		c.stats.inc(c.prefix + "health_check.success")
		h.hcFailures = 0
		if !h.hcHealthy {
			h.hcSuccesses++
			if h.hcPending || h.hcSuccesses >= hc.HealthyThreshold {
				h.hcHealthy, h.hcSuccesses, changed = true, 0, true
			}
		}
		if h.ejected && c.cfg.Outlier != nil && c.cfg.Outlier.UnejectOnActiveHCSuccess {
			h.ejected, unejected = false, true
		}
	} else {
		c.stats.inc(c.prefix + "health_check.failure")
		if network {
			c.stats.inc(c.prefix + "health_check.network_failure")
		}
		h.hcSuccesses = 0
		if h.hcHealthy {
			h.hcFailures++
			// Like Envoy: unhealthy_threshold applies to network failures and timeouts; an
			// HTTP answer with an unexpected status makes the host unhealthy at once.
			if h.hcFailures >= hc.UnhealthyThreshold || !network {
				h.hcHealthy, h.hcFailures, changed = false, 0, true
			}
		}
	}
	h.hcPending = false
	healthy = h.hcHealthy
	h.mu.Unlock()
	if changed || unejected {
		c.log.Info("health changed", "host", h.addr, "healthy", healthy, "unejected", unejected)
		c.rebuild()
	}
	return healthy, changed
}

// outcome reports the result of one upstream attempt on h to outlier detection: an HTTP status,
// or 503 for a connection failure or reset and 504 for a timeout (Envoy maps local-origin
// errors to these when split_external_local_origin_errors is off).
func (c *cluster) outcome(h *host, status int) {
	o := c.cfg.Outlier
	if o == nil {
		return
	}
	var eject string
	var enforce int
	h.mu.Lock()
	switch {
	case status >= 500:
		h.cons5xx++
		if status == 502 || status == 503 || status == 504 {
			h.consGateway++
		} else {
			h.consGateway = 0
		}
		if o.Consecutive5xx > 0 && h.cons5xx >= o.Consecutive5xx {
			eject, enforce = "consecutive_5xx", o.Enforcing5xx
		} else if o.ConsecutiveGateway > 0 && h.consGateway >= o.ConsecutiveGateway {
			eject, enforce = "consecutive_gateway_failure", o.EnforcingGateway
		}
	default:
		h.cons5xx, h.consGateway = 0, 0
	}
	if eject != "" {
		h.cons5xx, h.consGateway = 0, 0
	}
	already := h.ejected
	h.mu.Unlock()
	if eject == "" || already {
		return
	}
	c.stats.inc(c.prefix + "outlier_detection.ejections_detected_" + eject)
	if enforce < 100 && rand.IntN(100) >= enforce {
		return
	}
	c.mu.RLock()
	total, active := len(c.hosts), 0
	for _, x := range c.hosts {
		x.mu.Lock()
		if x.ejected {
			active++
		}
		x.mu.Unlock()
	}
	c.mu.RUnlock()
	if float64(active+1)*100/float64(total) > float64(o.MaxEjectionPercent) {
		c.stats.inc(c.prefix + "outlier_detection.ejections_overflow")
		return
	}
	h.mu.Lock()
	h.ejected, h.ejectedAt = true, time.Now()
	h.ejections++
	h.mu.Unlock()
	c.stats.inc(c.prefix + "outlier_detection.ejections_enforced_total")
	c.stats.inc(c.prefix + "outlier_detection.ejections_enforced_" + eject)
	c.log.Info("host ejected", "host", h.addr, "reason", eject)
	c.rebuild()
}

// outlierSweeps returns ejected hosts to service once their ejection time has passed, checked
// every interval like Envoy.
func (c *cluster) outlierSweeps(ctx context.Context) {
	o := c.cfg.Outlier
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.mu.RLock()
			hosts := c.hosts
			c.mu.RUnlock()
			changed := false
			for _, h := range hosts {
				h.mu.Lock()
				if h.ejected {
					d := min(o.BaseEjectionTime*time.Duration(h.ejections), o.MaxEjectionTime)
					if now.Sub(h.ejectedAt) >= d {
						h.ejected, changed = false, true
					}
				}
				h.mu.Unlock()
			}
			if changed {
				c.rebuild()
			}
		}
	}
}

func (c *cluster) close() {
	c.mu.Lock()
	hosts := c.hosts
	c.mu.Unlock()
	for _, h := range hosts {
		if h.stop != nil {
			h.stop()
		}
	}
	c.transport.CloseIdleConnections()
	c.hcClient.CloseIdleConnections()
}
