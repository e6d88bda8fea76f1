package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"
)

// PluginConfig is the configuration of one Envoy wasm filter (plugin) and its VMs, mirroring
// envoy.extensions.filters.http.wasm.v3.Wasm. The zero value of every field selects the
// default documented on it. NewPlugin keeps the byte slices: do not modify them afterwards.
type PluginConfig struct {
	Name            string // plugin name (plugin_name property)
	RootID          string // root_id (plugin_root_id property)
	VMID            string // vm_config.vm_id: the shared-data namespace; "" is a valid one
	NodeID          string // Envoy's node id (xds.node.id property); "" means NOT_FOUND
	Configuration   []byte // plugin configuration: buffer 7, readable only in proxy_on_configure
	VMConfiguration []byte // vm_config.configuration: buffer 6, readable only in proxy_on_vm_start
	// Env holds vm_config.environment_variables: the only environment the guest sees.
	Env map[string]string
	// Concurrency is Envoy's --concurrency N: N worker VMs plus the main thread's VM.
	// 0 means 1 worker.
	Concurrency   int
	FailurePolicy FailurePolicy // zero value: FailClosed
	// Clock drives time for the guest, ticks and reload back-off; nil means SystemClock().
	Clock Clock
	// Shared is the shared-data store; nil means a new one. Pass one store to several plugins
	// to share it as Envoy does process-wide.
	Shared *SharedData
	// Metrics receives the wasm custom metrics of all VMs; nil means a new one.
	Metrics *Metrics
	// Log receives guest log lines (proxy_log, and fd_write to stdout at info and stderr at
	// error level) with the VM's name ("main", "worker-<i>", "canary"). nil discards them.
	// It runs inside the guest call, with the VM locked: it must not call back into the VM.
	Log func(level LogLevel, vm string, msg string)
	// LogLevel is the level proxy_get_log_level reports; lines below it are dropped.
	// The zero value is LogTrace (everything).
	LogLevel LogLevel
	// ReloadBackoff is the FAIL_RELOAD base back-off; 0 means 1 s. The delay before reload
	// attempt n (from 0) is base*2^min(n,5), plus up to half of it as jitter.
	ReloadBackoff time.Duration
	// Grpc carries the guests' proxy_grpc_call calls; nil: every cluster is unknown.
	Grpc GrpcTransport
	// Faults fails chosen host calls of this plugin's VMs (a test facility); nil: none.
	Faults *HostFaults
}

// Plugin is a started plugin: a main-thread VM and N worker VMs of one Module, configured
// alike. It is safe for concurrent use; each VM serializes its own calls.
type Plugin struct {
	module      *Module
	cfg         PluginConfig
	clock       Clock
	shared      *SharedData
	metrics     *Metrics
	monoBase    time.Time
	main        *VM
	workers     []*VM
	reloadCount atomic.Int64
	closed      atomic.Bool
}

// NewPlugin starts a plugin as Envoy does: first a throw-away canary VM runs the full start
// sequence (_initialize, proxy_on_context_create(1, 0), proxy_on_vm_start(1, vm_config_size),
// proxy_on_configure(1, plugin_config_size)); if it traps or a start callback returns false,
// the configuration is rejected with an error that quotes the guest's error and critical log
// lines. Then the main VM and Concurrency worker VMs are started the same way.
func NewPlugin(ctx context.Context, m *Module, cfg PluginConfig) (*Plugin, error) {
	if m == nil {
		return nil, errors.New("wasmhost: nil module")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1
	}
	if cfg.ReloadBackoff <= 0 {
		cfg.ReloadBackoff = time.Second
	}
	p := &Plugin{module: m, cfg: cfg, clock: cfg.Clock, shared: cfg.Shared, metrics: cfg.Metrics}
	if p.clock == nil {
		p.clock = SystemClock()
	}
	if p.shared == nil {
		p.shared = NewSharedData()
	}
	if p.metrics == nil {
		p.metrics = NewMetrics()
	}
	p.monoBase = p.clock.Now()
	p.shared.acquire(cfg.VMID)

	canary := newVM(p, roleCanary, 0)
	var lines []string
	canary.capture = &lines
	canary.mu.Lock()
	err := canary.start()
	if canary.inst != nil {
		_ = canary.inst.Close(ctx)
		canary.inst = nil
	}
	canary.mu.Unlock()
	if err != nil {
		p.shared.release(cfg.VMID)
		var guestLog string
		if len(lines) > 0 {
			guestLog = "; guest log:\n" + strings.Join(lines, "\n")
		}
		return nil, fmt.Errorf("wasmhost: plugin %q rejected: canary VM failed: %w%s", cfg.Name, err, guestLog)
	}

	p.main = newVM(p, roleMain, 0)
	for i := 0; i < cfg.Concurrency; i++ {
		p.workers = append(p.workers, newVM(p, roleWorker, i))
	}
	for _, vm := range p.all() {
		vm.mu.Lock()
		err := vm.start()
		vm.mu.Unlock()
		if err != nil {
			_ = p.Close(ctx)
			return nil, fmt.Errorf("wasmhost: plugin %q: starting VM %s: %w", cfg.Name, vm.name, err)
		}
	}
	return p, nil
}

func (p *Plugin) all() []*VM { return append([]*VM{p.main}, p.workers...) }

// Main returns the main thread's VM.
func (p *Plugin) Main() *VM { return p.main }

// Workers returns the number of worker VMs (Envoy's --concurrency).
func (p *Plugin) Workers() int { return len(p.workers) }

// Worker returns worker VM i, 0 <= i < Workers().
func (p *Plugin) Worker(i int) *VM { return p.workers[i] }

// Metrics returns the plugin's stat store.
func (p *Plugin) Metrics() *Metrics { return p.metrics }

// Shared returns the plugin's shared-data store.
func (p *Plugin) Shared() *SharedData { return p.shared }

// Reloads returns how many times a failed VM of the plugin was reloaded (FAIL_RELOAD).
func (p *Plugin) Reloads() int64 { return p.reloadCount.Load() }

// Tick calls Tick on every VM of the plugin (main and workers).
func (p *Plugin) Tick() {
	for _, vm := range p.all() {
		vm.Tick()
	}
}

// Close shuts every VM down (root context proxy_on_done and proxy_on_delete), then releases
// the plugin's shared-data namespace: the last plugin of a vm_id to close drops its data.
func (p *Plugin) Close(ctx context.Context) error {
	if p.closed.Swap(true) {
		return nil
	}
	var errs []error
	for _, vm := range p.all() {
		if vm == nil {
			continue
		}
		if err := vm.shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	p.shared.release(p.cfg.VMID)
	return errors.Join(errs...)
}

// reloadDelay is the jittered FAIL_RELOAD back-off before reload attempt n (from 0).
func (p *Plugin) reloadDelay(n int) time.Duration {
	d := p.cfg.ReloadBackoff << min(n, 5)
	return d + rand.N(d/2+1)
}
