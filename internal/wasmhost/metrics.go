package wasmhost

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// statPrefix is the namespace Envoy gives wasm custom metrics.
const statPrefix = "wasmcustom."

// Metrics is Envoy's stat store for wasm custom metrics. A metric defined by a guest under
// name n is the stat "wasmcustom.<n>"; every VM (and every plugin given the same Metrics)
// that defines the same name and type shares it: counters add up, a gauge's last write wins,
// a histogram collects every recorded value (kept as count and sum).
//
// The zero value is not usable; call NewMetrics. Metrics is safe for concurrent use; updates
// of an already defined metric are lock-free.
type Metrics struct {
	mu    sync.Mutex
	stats map[metricKey]*metric
}

type metricKey struct {
	kind uint32
	name string // full stat name, with the wasmcustom. prefix
}

type metric struct {
	kind  uint32
	name  string
	value atomic.Int64 // counter and gauge value; histogram sum
	count atomic.Int64 // histogram sample count
}

// NewMetrics returns an empty stat store.
func NewMetrics() *Metrics { return &Metrics{stats: make(map[metricKey]*metric)} }

// define returns the shared stat for a guest metric of the given kind and name.
func (m *Metrics) define(kind uint32, name string) *metric {
	k := metricKey{kind, statPrefix + name}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.stats[k]
	if s == nil {
		s = &metric{kind: kind, name: k.name}
		m.stats[k] = s
	}
	return s
}

// Get returns the value of the stat with Envoy's full name ("wasmcustom.<name>"): a counter's
// total, a gauge's value, or a histogram's sample count. Counters are looked up first, then
// gauges, then histograms.
func (m *Metrics) Get(name string) (value int64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, kind := range [...]uint32{metricCounter, metricGauge, metricHistogram} {
		if s := m.stats[metricKey{kind, name}]; s != nil {
			if kind == metricHistogram {
				return s.count.Load(), true
			}
			return s.value.Load(), true
		}
	}
	return 0, false
}

// Snapshot returns every counter and gauge by full name, and for each histogram h the
// entries "h.count" and "h.sum".
func (m *Metrics) Snapshot() map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int64, len(m.stats))
	for _, s := range m.stats {
		if s.kind == metricHistogram {
			out[s.name+".count"] = s.count.Load()
			out[s.name+".sum"] = s.value.Load()
			continue
		}
		out[s.name] = s.value.Load()
	}
	return out
}

func (m *Metrics) sorted() []*metric {
	m.mu.Lock()
	list := make([]*metric, 0, len(m.stats))
	for _, s := range m.stats {
		list = append(list, s)
	}
	m.mu.Unlock()
	sort.Slice(list, func(i, j int) bool {
		if list[i].name != list[j].name {
			return list[i].name < list[j].name
		}
		return list[i].kind < list[j].kind
	})
	return list
}

// WriteText writes the stats like Envoy's admin /stats: one "name: value" line each, sorted
// by name. A histogram is written as "name: count=N sum=S" (Envoy prints quantiles instead).
func (m *Metrics) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	for _, s := range m.sorted() {
		if s.kind == metricHistogram {
			fmt.Fprintf(bw, "%s: count=%d sum=%d\n", s.name, s.count.Load(), s.value.Load())
			continue
		}
		fmt.Fprintf(bw, "%s: %d\n", s.name, s.value.Load())
	}
	return bw.Flush()
}

// WritePrometheus writes the stats like Envoy's admin /stats/prometheus: the "wasmcustom."
// prefix is dropped (Envoy registers it as a custom stat namespace), characters outside
// [a-zA-Z0-9_] (dots included) become underscores, and each metric gets a TYPE line.
// Histograms are written as _count and _sum only.
func (m *Metrics) WritePrometheus(w io.Writer) error {
	bw := bufio.NewWriter(w)
	for _, s := range m.sorted() {
		name := prometheusName(s.name)
		switch s.kind {
		case metricCounter:
			fmt.Fprintf(bw, "# TYPE %s counter\n%s{} %d\n", name, name, s.value.Load())
		case metricGauge:
			fmt.Fprintf(bw, "# TYPE %s gauge\n%s{} %d\n", name, name, s.value.Load())
		default:
			fmt.Fprintf(bw, "# TYPE %s histogram\n%s_count{} %d\n%s_sum{} %d\n",
				name, name, s.count.Load(), name, s.value.Load())
		}
	}
	return bw.Flush()
}

// prometheusName maps a full stat name to the name Envoy's /stats/prometheus uses for it.
func prometheusName(stat string) string {
	stat = strings.TrimPrefix(stat, statPrefix)
	b := []byte(stat)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) > 0 && b[0] >= '0' && b[0] <= '9' {
		return "_" + string(b)
	}
	return string(b)
}

// Metric types of the proxy-wasm ABI.
const (
	metricCounter   = 0
	metricGauge     = 1
	metricHistogram = 2
)

func hostDefineMetric(vm *VM, s []uint64) Status {
	typ := u32(s, 0)
	name, ok := vm.readArg(s, 1)
	if !ok {
		return StatusInvalidMemoryAccess
	}
	if typ > metricHistogram {
		return StatusBadArgument
	}
	m := vm.p.metrics.define(typ, string(name))
	vm.metricSlots[typ] = append(vm.metricSlots[typ], m)
	id := uint32(len(vm.metricSlots[typ]))<<2 | typ
	return memStatus(vm.mem.WriteUint32Le(u32(s, 3), id))
}

func (vm *VM) metricByID(id uint32) *metric {
	typ, idx := id&3, int(id>>2)-1
	if typ > metricHistogram || idx < 0 || idx >= len(vm.metricSlots[typ]) {
		return nil
	}
	return vm.metricSlots[typ][idx]
}

func hostIncrementMetric(vm *VM, s []uint64) Status {
	m := vm.metricByID(u32(s, 0))
	delta := int64(s[1])
	switch {
	case m == nil:
		return StatusNotFound
	case m.kind == metricCounter:
		if delta <= 0 {
			return StatusBadArgument
		}
		m.value.Add(delta)
		return StatusOK
	case m.kind == metricGauge:
		m.value.Add(delta)
		return StatusOK
	default:
		return StatusBadArgument
	}
}

func hostRecordMetric(vm *VM, s []uint64) Status {
	m := vm.metricByID(u32(s, 0))
	v := int64(s[1])
	switch {
	case m == nil:
		return StatusNotFound
	case m.kind == metricCounter:
		m.value.Add(v)
	case m.kind == metricGauge:
		m.value.Store(v)
	default:
		m.count.Add(1)
		m.value.Add(v)
	}
	return StatusOK
}

func hostGetMetric(vm *VM, s []uint64) Status {
	m := vm.metricByID(u32(s, 0))
	switch {
	case m == nil:
		return StatusNotFound
	case m.kind == metricHistogram:
		return StatusBadArgument
	default:
		return memStatus(vm.mem.WriteUint64Le(u32(s, 1), uint64(m.value.Load())))
	}
}
