package envoysim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
)

// adminHandler serves the admin endpoints envoysim implements.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, Banner)
		fmt.Fprintln(w, "\n/ready              LIVE once every cluster has had its first health checks")
		fmt.Fprintln(w, "/stats              counters and gauges (?filter=REGEX, ?format=json)")
		fmt.Fprintln(w, "/stats/prometheus   the same, in the Prometheus text format")
		fmt.Fprintln(w, "/clusters           hosts, their health flags and request counts")
		fmt.Fprintln(w, "/server_info        state and options")
		fmt.Fprintln(w, "/quitquitquit       (POST) stop the server")
	})
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		select {
		case <-s.ready:
			fmt.Fprintln(w, "LIVE")
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "PRE_INITIALIZING")
		}
	})
	mux.HandleFunc("/stats", s.serveStats)
	mux.HandleFunc("/stats/prometheus", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_ = writePrometheus(w, s.stats.snapshot())
		if s.filter != nil {
			_ = s.filter.WritePrometheus(w)
		}
	})
	mux.HandleFunc("/clusters", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		names := make([]string, 0, len(s.clusters))
		for n := range s.clusters {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			c := s.clusters[n]
			c.mu.RLock()
			hosts := c.hosts
			c.mu.RUnlock()
			for _, h := range hosts {
				h.mu.Lock()
				var flags []string
				if !h.hcHealthy {
					flags = append(flags, "/failed_active_hc")
				}
				if h.hcPending && c.cfg.HealthCheck != nil {
					flags = append(flags, "/pending_active_hc")
				}
				if h.ejected {
					flags = append(flags, "/failed_outlier_check")
				}
				h.mu.Unlock()
				f := "healthy"
				if len(flags) > 0 {
					f = strings.Join(flags, "")
				}
				fmt.Fprintf(w, "%s::%s::health_flags::%s\n", n, h.addr, f)
				fmt.Fprintf(w, "%s::%s::rq_total::%d\n", n, h.addr, h.rqTotal.Load())
			}
		}
	})
	mux.HandleFunc("/server_info", func(w http.ResponseWriter, r *http.Request) {
		state := "PRE_INITIALIZING"
		select {
		case <-s.ready:
			state = "LIVE"
		default:
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"version":              "envoysim (test and development stand-in for Envoy, not a production proxy)",
			"state":                state,
			"command_line_options": map[string]any{"concurrency": s.opts.Concurrency, "service_node": s.opts.ServiceNode},
			"node":                 map[string]any{"id": s.opts.ServiceNode},
		})
	})
	mux.HandleFunc("/quitquitquit", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
			return
		}
		fmt.Fprintln(w, "OK")
		s.quitOnce.Do(func() { close(s.quit) })
	})
	return mux
}

func (s *Server) serveStats(w http.ResponseWriter, r *http.Request) {
	var re *regexp.Regexp
	if f := r.URL.Query().Get("filter"); f != "" {
		var err error
		if re, err = regexp.Compile(f); err != nil {
			http.Error(w, "filter: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	var fs map[string]int64
	if s.filter != nil {
		fs = s.filter.Stats()
	}
	if r.URL.Query().Get("format") == "json" {
		type kv struct {
			Name  string `json:"name"`
			Value int64  `json:"value"`
		}
		names, all := merged(s.stats.snapshot(), fs, re)
		out := make([]kv, 0, len(names))
		for _, n := range names {
			out = append(out, kv{n, all[n]})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"stats": out})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_ = writeText(w, s.stats.snapshot(), fs, re)
}
