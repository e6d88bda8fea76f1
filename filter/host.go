//go:build wasip1

package main

import (
	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/limiter"
	"github.com/tokengate/tokengate/internal/proxywasm"
)

// sharedData is the limiter's Store over the host's shared data. The
// limiter acts on two outcomes, NOT_FOUND and CAS_MISMATCH; any other status
// is a hostFailure. What it decides then (see the limiter): a local rule's
// decision follows failure_mode, counted in the rule's failure_mode counter;
// the global tier's denial cache is skipped (a failed read is a miss, so the
// rate limit service is asked; a failed write forgets the denial); while
// configuring, the configuration is rejected. Each distinct failure (call and
// status) is logged once per VM, except while configuring, where the
// rejection's own critical line names it.
type sharedData struct{}

func (sharedData) GetSharedData(key []byte) ([]byte, uint32, error) {
	v, cas, st := proxywasm.GetSharedData(key)
	return v, cas, statusErr(callGet, st)
}

func (sharedData) SetSharedData(key, value []byte, cas uint32) error {
	return statusErr(callSet, proxywasm.SetSharedData(key, value, cas))
}

const (
	callGet = "proxy_get_shared_data"
	callSet = "proxy_set_shared_data"
)

// hostFailure is a host call that failed with a status the caller has no
// answer for. Values are made on first use and kept, one per call and
// status, so a failing host costs no allocation per request.
type hostFailure struct {
	call   string
	status proxywasm.Status
	logged bool // this VM has logged it
}

func (e *hostFailure) Error() string { return e.call + ": " + e.status.String() }

var (
	hostFailures []*hostFailure
	hostLogged   bool // a failure reading the request (headers, source.address) or adding response headers has been logged by this VM
	configuring  bool // OnConfigure is running: a failure is reported by its rejection
)

func statusErr(call string, st proxywasm.Status) error {
	switch st {
	case proxywasm.StatusOK:
		return nil
	case proxywasm.StatusNotFound:
		return limiter.ErrNotFound
	case proxywasm.StatusCASMismatch:
		return limiter.ErrCASMismatch
	}
	var err *hostFailure
	for _, e := range hostFailures {
		if e.call == call && e.status == st {
			err = e
		}
	}
	if err == nil {
		err = &hostFailure{call: call, status: st}
		hostFailures = append(hostFailures, err)
	}
	if !configuring && !err.logged {
		logOnce(&err.logged, err.call, " failed: ", err.status.String(),
			": local rules that need it decide by failure_mode (counted in their failure_mode counter),",
			" the global tier's denial cache goes without it (the rate limit service is asked);",
			" logged once per VM for this call and status")
	}
	return err
}

// logHostFailure logs the first failure of this VM to read the request
// (headers, source.address) or to add response headers, which nothing else
// reports.
func logHostFailure(parts ...string) {
	if hostLogged {
		return
	}
	logOnce(&hostLogged, append(parts, " (logged once per VM)")...)
}

// logOnce logs the message made of parts at error level unless *done, then
// sets *done. The message is built only when it is logged, so a failing
// host costs no allocation per request.
func logOnce(done *bool, parts ...string) {
	if *done {
		return
	}
	*done = true
	msg := "tokengate: "
	for _, p := range parts {
		msg += p
	}
	proxywasm.Log(proxywasm.LogError, msg)
}

// requestClock reads the host's wall clock once per request, when first
// asked: the local rules and the global tier decide at the same instant, for
// one host call. The zero value has not read it.
type requestClock struct {
	now  int64
	read bool
}

func (c *requestClock) Now() int64 {
	if !c.read {
		c.now, c.read = proxywasm.Now(), true
	}
	return c.now
}

// metrics maps the limiter's per-rule counters to proxy-wasm metric ids.
type metrics struct {
	ids     [][limiter.NumAllCounters]uint32
	defined []uint32 // per rule, bit c: counter c has an id
	panics  uint32   // id of tokengate.panics, when panicsOK
	panicOK bool
}

// panicsMetric counts requests decided by failure_mode after a panic.
const panicsMetric = "tokengate.panics"

func (m *metrics) panicked() {
	if m.panicOK {
		proxywasm.IncrementMetric(m.panics, 1)
	}
}

// defineMetrics defines the counters of every rule: the bucket ones for
// local rules, the rate limit service ones for global rules. A counter the host
// refuses to define is logged once, with the host's status, and left out:
// the filter works on without it.
func defineMetrics(cfg *config.Config) metrics {
	m := metrics{ids: make([][limiter.NumAllCounters]uint32, len(cfg.Rules)), defined: make([]uint32, len(cfg.Rules))}
	for i := range cfg.Rules {
		for c := limiter.Counter(0); c < limiter.NumAllCounters; c++ {
			if c.Global() != (cfg.Rules[i].Global != nil) {
				continue // local rules count buckets, global ones the service
			}
			name := limiter.MetricName(cfg.Rules[i].Name, c)
			id, st := proxywasm.DefineMetric(proxywasm.MetricCounter, name)
			if st != proxywasm.StatusOK {
				proxywasm.Log(proxywasm.LogError, "tokengate: counter "+name+" not defined, it will not be kept: "+st.String())
				continue
			}
			m.ids[i][c] = id
			m.defined[i] |= 1 << c
		}
	}
	id, st := proxywasm.DefineMetric(proxywasm.MetricCounter, panicsMetric)
	if st != proxywasm.StatusOK {
		proxywasm.Log(proxywasm.LogError, "tokengate: counter "+panicsMetric+" not defined, it will not be kept: "+st.String())
	}
	m.panics, m.panicOK = id, st == proxywasm.StatusOK
	return m
}

func (m *metrics) Add(rule int, c limiter.Counter, delta int64) {
	if m.defined[rule]&(1<<c) != 0 {
		proxywasm.IncrementMetric(m.ids[rule][c], delta)
	}
}

// request is the limiter's view of the current request headers. When the
// rules read one header only, it asks the host for that header alone;
// otherwise the first header asked for fetches the whole map in one host
// call (one round trip into the host and one into the guest allocator,
// instead of two per header) and lookups scan it locally. The source
// address is asked for once, however many rules use it. Values are valid
// for the callback.
type request struct {
	single   string // the one header the rules read; "" when several
	value    []byte // single's value
	found    bool
	pairs    proxywasm.Pairs // the whole map, when several
	fetched  bool
	addr     []byte // source.address, once addrRead
	addrOK   bool
	addrRead bool
}

func (r *request) reset(single string) { *r = request{single: single} }

func (r *request) Header(name string) ([]byte, bool) {
	if r.single != "" && name == r.single {
		if !r.fetched {
			v, st := proxywasm.GetHeader(proxywasm.MapRequestHeaders, name)
			if st != proxywasm.StatusOK && st != proxywasm.StatusNotFound {
				logHostFailure("request header ", name, ": ", st.String(), ": taken as missing")
			}
			r.value, r.found, r.fetched = v, st == proxywasm.StatusOK, true
		}
		return r.value, r.found
	}
	if r.single != "" || !r.fetched {
		r.single, r.fetched = "", true
		raw, st := proxywasm.GetHeaderPairs(proxywasm.MapRequestHeaders)
		pairs, err := proxywasm.CheckPairs(raw)
		switch {
		case st != proxywasm.StatusOK:
			logHostFailure("request headers: ", st.String(), ": taken as missing")
		case err != nil:
			logHostFailure("request headers: ", err.Error(), ": taken as missing")
		}
		r.pairs = pairs
	}
	return r.pairs.Lookup(name)
}

const propSourceAddress = "source\x00address"

func (r *request) SourceAddress() ([]byte, bool) {
	if !r.addrRead {
		v, st := proxywasm.GetProperty(propSourceAddress)
		if st != proxywasm.StatusOK && st != proxywasm.StatusNotFound {
			logHostFailure("property source.address: ", st.String(), ": taken as missing")
		}
		r.addr, r.addrOK, r.addrRead = v, st == proxywasm.StatusOK && len(v) > 0, true
	}
	return r.addr, r.addrOK
}
