package wasmhost

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

func sharedString(t *testing.T, p *Plugin, key string) string {
	t.Helper()
	v, _, st := p.Shared().Get(p.cfg.VMID, key)
	if st != StatusOK {
		t.Fatalf("shared %q: %v", key, st)
	}
	return string(v)
}

func TestStartSequenceBuffers(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{
		Configuration:   []byte("plugin-config"),
		VMConfiguration: []byte("vm-config"),
	})
	// VM configuration (6) only in proxy_on_vm_start, plugin configuration (7) only in
	// proxy_on_configure.
	if got, want := sharedString(t, p, "bufcheck.vm_start"), "6=vm-config/status=0 7=status=1"; got != want {
		t.Errorf("in proxy_on_vm_start: %q, want %q", got, want)
	}
	if got, want := sharedString(t, p, "bufcheck.configure"), "6=status=1 7=plugin-config/status=0"; got != want {
		t.Errorf("in proxy_on_configure: %q, want %q", got, want)
	}
	// After start-up neither is readable: a request reading them would get NOT_FOUND; the
	// metric ids prove proxy_on_configure ran on a fresh VM (ids start at 4, 5, 6).
	if got := sharedString(t, p, "metric.ids"); got != "4,5,6" {
		t.Errorf("metric ids = %q, want 4,5,6", got)
	}
}

func TestNPlusOneVMsAndContextIDs(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{Concurrency: 3})
	if p.Workers() != 3 {
		t.Fatalf("Workers = %d", p.Workers())
	}
	vms := []*VM{p.Main(), p.Worker(0), p.Worker(1), p.Worker(2)}
	seen := map[*VM]bool{}
	for _, vm := range vms {
		if seen[vm] {
			t.Fatal("VMs are not distinct")
		}
		seen[vm] = true
		// Context ids are per VM: 1 is the root, streams get 2, 3, ... never reused.
		for want := uint32(2); want <= 4; want++ {
			s := vm.NewStream(info)
			if s.ID() != want {
				t.Fatalf("%s: stream id %d, want %d", vm.Name(), s.ID(), want)
			}
			s.RequestHeaders(req(""), true)
			s.Close()
		}
	}
	// 4 VMs, each ran proxy_on_configure: the canary is gone, so the stat counts 4x3 requests.
	if v, _ := p.Metrics().Get("wasmcustom.guest.requests"); v != 12 {
		t.Errorf("requests = %d, want 12", v)
	}
	if p.Main().Name() != "main" || p.Worker(2).Name() != "worker-2" {
		t.Errorf("names %q %q", p.Main().Name(), p.Worker(2).Name())
	}
}

func TestConcurrencyZeroMeansOneWorker(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{})
	if p.Workers() != 1 {
		t.Fatalf("Workers = %d, want 1", p.Workers())
	}
}

func TestCanaryRejectsBadConfiguration(t *testing.T) {
	tests := []struct {
		config string
		wants  []string
		cause  func(error) bool // the cause survives the canary's wrapping (nil: not checked)
	}{
		{"fail", []string{"proxy_on_configure returned false", "critical: config invalid: rules[0].capacity: must be > 0"},
			func(err error) bool { return errors.Is(err, errReturnedFalse) }},
		{"trap", []string{"proxy_on_configure", "configure trap"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.config, func(t *testing.T) {
			shared := NewSharedData()
			_, err := NewPlugin(context.Background(), guestModule(t, "guest"), PluginConfig{
				Name: "bad", Configuration: []byte(tt.config), Shared: shared,
			})
			if err == nil {
				t.Fatal("NewPlugin accepted the configuration")
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
			if tt.cause != nil && !tt.cause(err) {
				t.Errorf("the cause is lost in %v", err)
			}
			if shared.Len("") != 0 {
				t.Errorf("rejected plugin left %d shared keys", shared.Len(""))
			}
		})
	}
}

func TestRestrictedCallbackDuringInitialize(t *testing.T) {
	_, err := NewPlugin(context.Background(), guestModule(t, "guest"), PluginConfig{
		Name: "init", Env: map[string]string{"GUEST_INIT_TOUCH": "shared"},
	})
	var rc restrictedCallback
	if !errors.As(err, &rc) || rc.fn != "env.proxy_get_shared_data" {
		t.Fatalf("err = %v, want a restricted_callback trap naming env.proxy_get_shared_data, kept as the cause", err)
	}
	// proxy_log is allowed while _initialize runs.
	p, sink := newTestPlugin(t, PluginConfig{Env: map[string]string{"GUEST_INIT_TOUCH": "log"}})
	_ = p
	if !strings.Contains(sink.String(), "init: proxy_log is allowed") {
		t.Errorf("log during _initialize missing:\n%s", sink)
	}
}

func TestRestrictedCallbackDuringAllocation(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{})
	vm := p.Worker(0)
	s := vm.NewStream(info)
	r := s.RequestHeaders(req("allocbad"), true)
	s.Close()
	if r.LocalReply == nil || r.LocalReply.Status != 503 || r.LocalReply.Details != "wasm_fail_stream" {
		t.Fatalf("result %+v, want a 503 wasm_fail_stream", r)
	}
	if !vm.Failed() || !strings.Contains(vm.Err().Error(), "restricted_callback") ||
		!strings.Contains(vm.Err().Error(), "proxy_get_current_time_nanoseconds") {
		t.Fatalf("VM error = %v", vm.Err())
	}
}

func TestWASIEnvironClockAndStdio(t *testing.T) {
	clock := NewFakeClock(epoch)
	p, sink := newTestPlugin(t, PluginConfig{Clock: clock, Env: map[string]string{"REGION": "eu-1"}})
	s := p.Worker(0).NewStream(info)
	r := s.RequestHeaders(req("env:REGION,env:HOME,time,stdout:hello out,stderr:hello err"), true)
	s.Close()
	out := outputs(r.Headers)
	var envs []string
	for _, kv := range r.Headers {
		if kv[0] == "x-out-env" {
			envs = append(envs, kv[1])
		}
	}
	// Only vm_config environment variables are visible: REGION is, HOME is not.
	if len(envs) != 2 || envs[0] != "eu-1" || envs[1] != "" {
		t.Errorf("env outputs %q, want [eu-1 \"\"]", envs)
	}
	want := strconv.FormatInt(epoch.UnixNano(), 10)
	if out["time"] != want+"/"+want {
		t.Errorf("time = %q, want proxy and WASI realtime both %s", out["time"], want)
	}
	log := sink.String()
	if !strings.Contains(log, "[worker-0] info: hello out") || !strings.Contains(log, "[worker-0] error: hello err") {
		t.Errorf("stdio not logged as info/error lines:\n%s", log)
	}
}

func TestTicksPerVMDrivenByClock(t *testing.T) {
	clock := NewFakeClock(epoch)
	p, _ := newTestPlugin(t, PluginConfig{Clock: clock, Concurrency: 2, Configuration: []byte("tick=100")})
	ticks := func() int64 { v, _ := p.Metrics().Get("wasmcustom.guest.ticks"); return v }
	steps := []struct {
		advance time.Duration
		want    int64
	}{
		{0, 0},                       // the first tick comes one period after the period was set
		{99 * time.Millisecond, 0},   // not yet
		{1 * time.Millisecond, 3},    // main + 2 workers, one tick each
		{50 * time.Millisecond, 3},   // re-armed one period after the tick ran
		{50 * time.Millisecond, 6},   // second period
		{time.Second, 9},             // a late tick fires once, not ten times
		{100 * time.Millisecond, 12}, // re-armed from when it ran
	}
	for i, st := range steps {
		clock.Advance(st.advance)
		p.Tick()
		if got := ticks(); got != st.want {
			t.Fatalf("step %d: ticks = %d, want %d", i, got, st.want)
		}
	}
}

func TestRootContextPropertiesAndLocalReply(t *testing.T) {
	p, _ := newTestPlugin(t, PluginConfig{Name: "rl", Configuration: []byte("rootprops;rootlocal")})
	if got, want := sharedString(t, p, "rootprops"), "status=1 status=1 rl/status=0"; got != want {
		t.Errorf("root properties = %q, want %q", got, want)
	}
	if got := sharedString(t, p, "rootlocal"); got != "status=0" {
		t.Errorf("send_local_response from root = %q, want OK and no effect", got)
	}
}

func TestTickPeriodZeroDisables(t *testing.T) {
	clock := NewFakeClock(epoch)
	p, _ := newTestPlugin(t, PluginConfig{Clock: clock, Configuration: []byte("tick=100;tick=0")})
	for i := 0; i < 3; i++ {
		clock.Advance(time.Second)
		p.Tick()
	}
	if v, ok := p.Metrics().Get("wasmcustom.guest.ticks"); ok || v != 0 {
		t.Fatalf("ticks = %d (defined %v) after the period was set to 0", v, ok)
	}
}
