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
	calls   byKey // streams waiting for the rate limit service, by call token
	// answering is the stream whose call a gRPC callback is answering,
	// taken from calls: a panic in the callback finds it here.
	answering *stream
	req       request
	clock     requestClock    // of the request being decided
	reply     limiter.Headers // headers of the local reply being sent
	pairs     [][2]string     // reply in pairs, for encoding
	encoded   []byte
}

// root is one configured plugin.
type root struct {
	id      uint32
	cfg     *config.Config
	lim     *limiter.Limiter
	metrics metrics
	single  string // the one request header the rules read, if one
}

func newVM() *vm { return &vm{} }

// root returns root context id, or nil. A linear scan: a VM hosts one
// plugin, rarely a few, and Go maps are slow inside wasm.
func (v *vm) root(id uint32) *root {
	for _, r := range v.roots {
		if r.id == id {
			return r
		}
	}
	return nil
}

func (v *vm) OnContextCreate(id, parent uint32) {
	if parent == 0 {
		v.roots = append(v.roots, &root{id: id})
		return
	}
	v.streams.open(id, v.root(parent))
}

func (v *vm) OnVMStart(uint32, int) bool { return true }

// OnConfigure validates the plugin configuration; on any problem it logs
// them all in one critical line and returns false, so Envoy rejects it.
func (v *vm) OnConfigure(id uint32, size int) bool {
	r := v.root(id)
	if r == nil {
		r = &root{id: id}
		v.roots = append(v.roots, r)
	}
	raw, st := proxywasm.GetBuffer(proxywasm.BufferPluginConfiguration, 0, size)
	if st != proxywasm.StatusOK && size > 0 {
		proxywasm.Log(proxywasm.LogCritical, "tokengate: cannot read the plugin configuration: "+st.String())
		return false
	}
	cfg, err := config.Parse(append([]byte(nil), raw...))
	if err != nil {
		proxywasm.Log(proxywasm.LogCritical, err.Error()) // "invalid tokengate configuration: ..."
		return false
	}
	name := "tokengate"
	if p, st := proxywasm.GetProperty("plugin_name"); st == proxywasm.StatusOK && len(p) > 0 {
		name = string(p)
	}
	r.cfg, r.metrics = cfg, defineMetrics(cfg)
	r.lim = limiter.New(cfg, name, sharedData{}, &r.metrics)
	configuring = true
	err = r.lim.Start(proxywasm.Now(), rand.Uint64())
	configuring = false
	if err != nil {
		proxywasm.Log(proxywasm.LogCritical, "tokengate: shared data unusable: "+err.Error())
		return false
	}
	r.single, _ = r.lim.SingleHeader()
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

// OnRequestHeaders is the request path: the local rules decide; a refusal
// is answered at once; an admitted request has its rate-limit headers
// rendered now, once, for the response.
func (v *vm) OnRequestHeaders(id uint32, _ int, _ bool) proxywasm.Action {
	s := v.streams.get(id)
	if s == nil || s.root == nil || s.root.lim == nil {
		return proxywasm.ActionContinue
	}
	if faultHook != nil {
		faultHook()
	}
	v.req.reset(s.root.single)
	v.clock = requestClock{}
	d := s.root.lim.Decide(&v.req, &v.clock)
	if d.Denied {
		return v.refuse(s, s.root.lim, d)
	}
	if len(d.Verdicts) > 0 {
		s.root.lim.AppendHeaders(&s.headers, d)
	}
	return v.admit(s)
}

// faultHook, when set (only by the test build of hook.go), runs first in
// every request callback.
var faultHook func()

// admit lets a request the local rules allowed go on. Tiers that decide
// after the local rules (and may pause the stream) belong here: the global
// rules (global.go), so a request refused locally never reaches the rate
// limit service.
func (v *vm) admit(s *stream) proxywasm.Action {
	if s.root.lim.Global() != nil {
		return v.checkGlobal(s)
	}
	return proxywasm.ActionContinue
}

// renderer renders the headers of a refusal: the Limiter for the local
// rules, its Global for the global ones.
type renderer interface {
	AppendHeaders(h *limiter.Headers, d *limiter.Decision)
}

// replyLogged: this VM has logged a local reply the host refused.
var replyLogged bool

// refuse answers the stream with the configured reply and the headers r
// renders for d, and returns Pause. If the host refuses to send it, the
// stream continues rather than staying paused with no answer: the request
// goes through, logged once per VM, and stays counted as limited.
func (v *vm) refuse(s *stream, r renderer, d *limiter.Decision) proxywasm.Action {
	cfg := s.root.cfg
	v.reply.Reset()
	v.reply.Add("content-type", cfg.ContentType)
	r.AppendHeaders(&v.reply, d)
	v.pairs = v.pairs[:0]
	for i := 0; i < v.reply.Len(); i++ {
		name, value := v.reply.At(i)
		v.pairs = append(v.pairs, [2]string{name, unsafe.String(unsafe.SliceData(value), len(value))})
	}
	v.encoded = proxywasm.AppendPairs(v.encoded[:0], v.pairs)
	body := unsafe.Slice(unsafe.StringData(cfg.Body), len(cfg.Body))
	if st := proxywasm.SendLocalResponse(cfg.Status, "tokengate_rate_limited", body, v.encoded); st != proxywasm.StatusOK {
		logOnce(&replyLogged, "the local reply was not sent, the request continues: ", st.String(), " (logged once per VM)")
		return proxywasm.ActionContinue
	}
	s.replied = true
	return proxywasm.ActionPause
}

// OnResponseHeaders adds the headers rendered when the request was decided.
// A local reply carries its own, and a stream no rule matched has none.
func (v *vm) OnResponseHeaders(id uint32, _ int, _ bool) proxywasm.Action {
	s := v.streams.get(id)
	if s == nil || s.replied {
		return proxywasm.ActionContinue
	}
	for i := 0; i < s.headers.Len(); i++ {
		name, value := s.headers.At(i)
		if st := proxywasm.ReplaceHeader(proxywasm.MapResponseHeaders, name, value); st != proxywasm.StatusOK {
			logHostFailure("response header ", name, ": ", st.String(), ": left out")
		}
	}
	return proxywasm.ActionContinue
}

// OnRequestPanic follows failure_mode after a panic in OnRequestHeaders: a
// bug must not decide the stream's fate by itself. Under "deny" the client
// gets the configured reply with Retry-After: 1. Each one is counted in
// tokengate.panics, besides the critical log line.
func (v *vm) OnRequestPanic(id uint32) proxywasm.Action {
	s := v.streams.get(id)
	if s == nil || s.root == nil || s.root.lim == nil {
		return proxywasm.ActionContinue
	}
	s.root.metrics.panicked()
	if s.replied { // the panic came after the reply was on its way
		return proxywasm.ActionPause
	}
	d := s.root.lim.Undecided()
	s.headers.Reset()
	if d.Denied {
		return v.refuse(s, s.root.lim, d)
	}
	return proxywasm.ActionContinue
}

func (v *vm) OnDelete(id uint32) {
	v.cancelCall(id)
	if v.streams.close(id) {
		return
	}
	for i, r := range v.roots {
		if r.id == id {
			v.roots = append(v.roots[:i], v.roots[i+1:]...)
			return
		}
	}
}
