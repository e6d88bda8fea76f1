package envoysim

import (
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// stats is envoysim's own stat store: counters and gauges by full Envoy name
// ("cluster.users.upstream_rq_total"). Safe for concurrent use.
type stats struct {
	mu     sync.Mutex
	values map[string]*stat
}

type stat struct {
	atomic.Int64
	gauge bool
}

func newStats() *stats { return &stats{values: map[string]*stat{}} }

func (s *stats) get(name string, gauge bool) *stat {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.values[name]
	if !ok {
		v = &stat{gauge: gauge}
		s.values[name] = v
	}
	return v
}

// counter returns the counter name, created at zero on first use.
func (s *stats) counter(name string) *stat { return s.get(name, false) }

// gauge returns the gauge name, created at zero on first use.
func (s *stats) gauge(name string) *stat { return s.get(name, true) }

func (s *stats) inc(name string) { s.counter(name).Add(1) }

func (s *stats) snapshot() map[string]*stat {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]*stat, len(s.values))
	for k, v := range s.values {
		m[k] = v
	}
	return m
}

// merged returns every stat, envoysim's and the filter's, sorted by name; a non-nil re keeps
// only the names it matches.
func merged(own map[string]*stat, filter map[string]int64, re *regexp.Regexp) ([]string, map[string]int64) {
	all := make(map[string]int64, len(own)+len(filter))
	for k, v := range own {
		all[k] = v.Load()
	}
	for k, v := range filter {
		all[k] = v
	}
	names := make([]string, 0, len(all))
	for k := range all {
		if re == nil || re.MatchString(k) {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	return names, all
}

// writeText writes stats as "name: value" lines sorted by name, like Envoy's /stats.
func writeText(w io.Writer, own map[string]*stat, filter map[string]int64, re *regexp.Regexp) error {
	names, all := merged(own, filter, re)
	for _, k := range names {
		if _, err := fmt.Fprintf(w, "%s: %d\n", k, all[k]); err != nil {
			return err
		}
	}
	return nil
}

// promName turns an Envoy stat name into a Prometheus metric name and labels, with Envoy's
// default tag extraction for the stats envoysim keeps: cluster.<name>.x becomes
// envoy_cluster_x{envoy_cluster_name="<name>"} and http.<prefix>.x becomes
// envoy_http_x{envoy_http_conn_manager_prefix="<prefix>"}.
func promName(name string) (string, string) {
	parts := strings.SplitN(name, ".", 3)
	if len(parts) == 3 {
		switch parts[0] {
		case "cluster":
			return "envoy_cluster_" + sanitize(parts[2]), `envoy_cluster_name="` + parts[1] + `"`
		case "http":
			return "envoy_http_" + sanitize(parts[2]), `envoy_http_conn_manager_prefix="` + parts[1] + `"`
		}
	}
	return "envoy_" + sanitize(name), ""
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// writePrometheus writes envoysim's own stats in the Prometheus text format.
func writePrometheus(w io.Writer, own map[string]*stat) error {
	type sample struct {
		labels string
		value  int64
	}
	families := map[string][]sample{}
	types := map[string]string{}
	for k, v := range own {
		n, l := promName(k)
		families[n] = append(families[n], sample{l, v.Load()})
		types[n] = "counter"
		if v.gauge {
			types[n] = "gauge"
		}
	}
	names := make([]string, 0, len(families))
	for n := range families {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := fmt.Fprintf(w, "# TYPE %s %s\n", n, types[n]); err != nil {
			return err
		}
		ss := families[n]
		sort.Slice(ss, func(i, j int) bool { return ss[i].labels < ss[j].labels })
		for _, s := range ss {
			var err error
			if s.labels == "" {
				_, err = fmt.Fprintf(w, "%s %d\n", n, s.value)
			} else {
				_, err = fmt.Fprintf(w, "%s{%s} %d\n", n, s.labels, s.value)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}
