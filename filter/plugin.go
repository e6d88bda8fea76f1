//go:build wasip1

package main

import (
	"math/rand/v2"
	"strconv"
	"unsafe"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/limiter"
	"github.com/tokengate/tokengate/internal/proxywasm"
)

// vm is the proxywasm.Handler of one VM. Envoy runs one VM per thread and
// may host several plugins (root contexts) in it when they share a vm_id.
type vm struct {
	roots   []*root // few: one per plugin sharing this VM
	streams streamTable
	req     request
	scratch []byte // header values being rendered
	reply   replyHeaders
}

// root is one configured plugin.
type root struct {
	ctx     uint32
	cfg     *config.Config
	lim     *limiter.Limiter
	metrics metrics
}

func newVM() *vm {
	return &vm{scratch: make([]byte, 0, 256)}
}

// root returns the root context ctx, or nil. A linear scan: a VM hosts one
// plugin, rarely a few, and Go maps are slow inside wasm.
func (v *vm) root(ctx uint32) *root {
	for _, r := range v.roots {
		if r.ctx == ctx {
			return r
		}
	}
	return nil
}

func (v *vm) OnContextCreate(ctx, parent uint32) {
	if parent == 0 {
		v.roots = append(v.roots, &root{ctx: ctx})
		return
	}
	v.streams.open(ctx, v.root(parent))
}

func (v *vm) OnVMStart(uint32, int) bool { return true }

// OnConfigure validates the plugin configuration; on any problem it logs
// them all in one critical line and returns false, so Envoy rejects it.
func (v *vm) OnConfigure(ctx uint32, size int) bool {
	r := v.root(ctx)
	if r == nil {
		r = &root{ctx: ctx}
		v.roots = append(v.roots, r)
	}
	raw, st := proxywasm.GetBuffer(proxywasm.BufferPluginConfiguration, 0, size)
	if st != proxywasm.StatusOK && size > 0 {
		proxywasm.Log(proxywasm.LogCritical, "tokengate: cannot read the plugin configuration")
		return false
	}
	cfg, err := config.Parse(append([]byte(nil), raw...))
	if err != nil {
		proxywasm.Log(proxywasm.LogCritical, "tokengate: "+err.Error())
		return false
	}
	if cfg.RateLimitService != nil {
		proxywasm.Log(proxywasm.LogCritical, "tokengate: global rules are not supported by this build yet")
		return false
	}
	name := "tokengate"
	if p, st := proxywasm.GetProperty("plugin_name"); st == proxywasm.StatusOK && len(p) > 0 {
		name = string(p)
	}
	m := metrics{ids: make([][limiter.NumCounters]uint32, len(cfg.Rules))}
	for i := range cfg.Rules {
		for c := limiter.Counter(0); c < limiter.NumCounters; c++ {
			id, st := proxywasm.DefineMetric(proxywasm.MetricCounter, limiter.MetricName(cfg.Rules[i].Name, c))
			if st == proxywasm.StatusOK {
				m.ids[i][c] = id
			}
		}
	}
	r.cfg, r.metrics = cfg, m
	r.lim = limiter.New(cfg, name, sharedData{}, &r.metrics)
	if err := r.lim.Start(proxywasm.Now(), rand.Uint64()); err != nil {
		proxywasm.Log(proxywasm.LogCritical, "tokengate: shared data unusable: "+err.Error())
		return false
	}
	proxywasm.Log(proxywasm.LogInfo, "tokengate: configured "+plural(len(cfg.Rules), "rule")+" for plugin "+name)
	return true
}

func plural(n int, word string) string {
	s := strconv.Itoa(n) + " " + word
	if n != 1 {
		s += "s"
	}
	return s
}

func (v *vm) OnRequestHeaders(ctx uint32, _ int, _ bool) proxywasm.Action {
	s := v.streams.get(ctx)
	if s == nil || s.root == nil || s.root.lim == nil {
		return proxywasm.ActionContinue
	}
	v.req.reset()
	d := s.root.lim.Decide(&v.req, hostClock{})
	s.keep(d)
	if !d.Denied {
		return proxywasm.ActionContinue
	}
	cfg := s.root.cfg
	v.reply.reset()
	v.reply.Emit("content-type", unsafe.Slice(unsafe.StringData(cfg.ContentType), len(cfg.ContentType)))
	v.scratch = s.root.lim.EmitHeaders(&v.reply, d, v.scratch)
	body := unsafe.Slice(unsafe.StringData(cfg.Body), len(cfg.Body))
	proxywasm.SendLocalResponse(cfg.Status, "tokengate_rate_limited", body, v.reply.encode())
	s.replied = true
	return proxywasm.ActionPause
}

func (v *vm) OnResponseHeaders(ctx uint32, _ int, _ bool) proxywasm.Action {
	// A stream no rule matched has no verdicts, and EmitHeaders renders
	// nothing for those or under "headers": "none".
	s := v.streams.get(ctx)
	if s == nil || s.replied || len(s.decision.Verdicts) == 0 {
		return proxywasm.ActionContinue
	}
	v.scratch = s.root.lim.EmitHeaders(responseHeaders{}, &s.decision, v.scratch)
	return proxywasm.ActionContinue
}

func (v *vm) OnDelete(ctx uint32) {
	if v.streams.close(ctx) {
		return
	}
	for i, r := range v.roots {
		if r.ctx == ctx {
			v.roots = append(v.roots[:i], v.roots[i+1:]...)
			return
		}
	}
}

// responseHeaders adds rendered headers to the upstream response.
type responseHeaders struct{}

func (responseHeaders) Emit(name string, value []byte) {
	proxywasm.ReplaceHeader(proxywasm.MapResponseHeaders, name, value)
}

// replyHeaders collects the headers of a local reply and encodes them in the
// header-pairs format without allocating once warm.
type replyHeaders struct {
	names  []string
	values []byte
	ends   []int
	pairs  [][2]string
	out    []byte
}

func (h *replyHeaders) reset() {
	h.names, h.values, h.ends = h.names[:0], h.values[:0], h.ends[:0]
}

func (h *replyHeaders) Emit(name string, value []byte) {
	h.names = append(h.names, name)
	h.values = append(h.values, value...)
	h.ends = append(h.ends, len(h.values))
}

func (h *replyHeaders) encode() []byte {
	h.pairs = h.pairs[:0]
	start := 0
	for i, name := range h.names {
		v := h.values[start:h.ends[i]]
		h.pairs = append(h.pairs, [2]string{name, unsafe.String(unsafe.SliceData(v), len(v))})
		start = h.ends[i]
	}
	h.out = proxywasm.AppendPairs(h.out[:0], h.pairs)
	return h.out
}
