package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// VM is one instance of the module: Envoy's VM of the main thread or of one worker thread.
// Like an Envoy worker it is single-threaded: every method serializes on an internal mutex,
// so any goroutine may drive it, and different VMs run in parallel.
//
// A VM that traps is failed for good (see Failed); under FailReload a fresh instance replaces
// it in place (same *VM) once the back-off has elapsed.
type VM struct {
	mu   sync.Mutex
	p    *Plugin
	role vmRole
	name string // "canary", "main", "worker-<i>": for logs and instance names
	ctx  *vmCtx

	// The live instance; replaced by a reload.
	inst     api.Module
	mem      api.Memory
	fnAlloc  api.Function
	fns      exportFns
	gen      uint64 // instance generation, bumped by every (re)start
	nextID   uint32 // next stream context id
	started  bool   // the start sequence completed
	failed   bool
	failErr  error
	trapNext bool

	// Reload state (FailReload).
	reloadAt time.Time
	reloads  int

	// Per-callback state.
	restrict uint8   // restrictInit / restrictAlloc while those phases run
	phase    phase   // which root callback runs (for buffers 6 and 7)
	cur      *Stream // stream whose callback runs; nil for the root context
	effSet   bool    // proxy_set_effective_context was called during this callback
	eff      *Stream // the effective context when effSet (nil: root)
	lastEff  *Stream // the stream the last invoke made effective, if any (gRPC callbacks)
	grpcs    grpcState
	streams  map[uint32]*Stream

	stack      []uint64 // reused for export calls
	allocStack []uint64 // reused for allocator calls (re-entrant from host functions)
	scratch    []byte   // reused for values returned to the guest

	tickPeriod time.Duration
	nextTick   time.Time
	lastMono   int64

	metricSlots [3][]*metric // by type; id = (index+1)<<2 | type
	lines       []byte       // reused to gather one fd_write
	capture     *[]string    // error/critical log lines, collected for the canary
	rootProps   map[string][]byte
	pendingDone bool
	closed      bool    // shut down with its plugin: never reloaded
	free        *Stream // a closed stream kept for reuse by Serve
}

const (
	rootContextID    = 1     // the root context of every VM; streams count from 2
	memoryLimitPages = 16384 // 1 GiB of linear memory, V8's cap
)

type phase uint8

const (
	phaseNone phase = iota
	phaseVMStart
	phaseConfigure
)

// exportFns are the module's callbacks, resolved once per instance; nil when not exported.
type exportFns struct {
	initialize, start, main                                 api.Function
	contextCreate, vmStart, configure, tick, done, log, del api.Function
	reqHeaders, reqBody                                     api.Function
	respHeaders, respBody                                   api.Function
	grpcReceive, grpcClose                                  api.Function
}

// vmCtx is the context every guest call of a VM runs with; host functions find their VM in it.
type vmCtx struct {
	context.Context
	vm *VM
}

type vmKey struct{}

func (c *vmCtx) Value(key any) any {
	if key == (vmKey{}) {
		return c.vm
	}
	return c.Context.Value(key)
}

func vmFrom(ctx context.Context) *VM {
	if c, ok := ctx.(*vmCtx); ok {
		return c.vm
	}
	return ctx.Value(vmKey{}).(*VM)
}

// errReturnedFalse is the cause of a start callback (proxy_on_vm_start, proxy_on_configure)
// that returned false.
var errReturnedFalse = errors.New("returned false")

// errTestTrap is the trap TrapNextCallback injects.
var errTestTrap = errors.New("trap injected by TrapNextCallback")

// vmRole is what a VM is for in its plugin.
type vmRole uint8

const (
	roleCanary vmRole = iota // the throw-away VM that checks the configuration; never reloaded
	roleMain                 // the main thread's VM
	roleWorker               // a worker thread's VM
)

// newVM makes a VM of the given role; worker numbers the workers from 0.
func newVM(p *Plugin, role vmRole, worker int) *VM {
	name := "main"
	switch role {
	case roleCanary:
		name = "canary"
	case roleWorker:
		name = "worker-" + strconv.Itoa(worker)
	}
	vm := &VM{
		p:          p,
		role:       role,
		name:       name,
		stack:      make([]uint64, 8),
		allocStack: make([]uint64, 1),
		streams:    make(map[uint32]*Stream),
	}
	vm.ctx = &vmCtx{Context: context.Background(), vm: vm}
	return vm
}

// Name returns the VM's name: "main", "worker-<i>" or "canary".
func (vm *VM) Name() string { return vm.name }

// start instantiates a fresh instance and runs Envoy's start sequence: _initialize (restricted),
// proxy_on_context_create(1, 0), proxy_on_vm_start(1, vm_config_size),
// proxy_on_configure(1, plugin_config_size). vm.mu must be held.
func (vm *VM) start() error {
	m := vm.p.module
	if vm.inst != nil {
		_ = vm.inst.Close(context.Background())
		vm.inst = nil
	}
	vm.gen++
	vm.failed, vm.failErr, vm.started = false, nil, false
	vm.nextID = rootContextID + 1
	vm.streams = make(map[uint32]*Stream)
	vm.tickPeriod, vm.nextTick = 0, time.Time{}
	vm.metricSlots = [3][]*metric{}
	vm.rootProps = nil
	vm.cur, vm.effSet, vm.eff = nil, false, nil

	name := fmt.Sprintf("%s-%s-%d", vm.p.cfg.Name, vm.name, m.seq.Add(1))
	inst, err := m.rt.InstantiateModule(vm.ctx, m.cm,
		wazero.NewModuleConfig().WithName(name).WithStartFunctions())
	if err != nil {
		vm.failed, vm.failErr = true, err
		return fmt.Errorf("instantiate: %w", err)
	}
	vm.inst = inst
	vm.mem = inst.Memory()
	if vm.mem == nil {
		vm.failed, vm.failErr = true, errors.New("module exports no memory")
		return vm.failErr
	}
	vm.fnAlloc = inst.ExportedFunction(m.allocName)
	vm.fns = exportFns{
		initialize:    inst.ExportedFunction("_initialize"),
		start:         inst.ExportedFunction("_start"),
		main:          inst.ExportedFunction("main"),
		contextCreate: inst.ExportedFunction("proxy_on_context_create"),
		vmStart:       inst.ExportedFunction("proxy_on_vm_start"),
		configure:     inst.ExportedFunction("proxy_on_configure"),
		tick:          inst.ExportedFunction("proxy_on_tick"),
		done:          inst.ExportedFunction("proxy_on_done"),
		log:           inst.ExportedFunction("proxy_on_log"),
		del:           inst.ExportedFunction("proxy_on_delete"),
		reqHeaders:    inst.ExportedFunction("proxy_on_request_headers"),
		reqBody:       inst.ExportedFunction("proxy_on_request_body"),
		respHeaders:   inst.ExportedFunction("proxy_on_response_headers"),
		respBody:      inst.ExportedFunction("proxy_on_response_body"),
		grpcReceive:   inst.ExportedFunction("proxy_on_grpc_receive"),
		grpcClose:     inst.ExportedFunction("proxy_on_grpc_close"),
	}

	// A WASI reactor gets _initialize, then main(0, 0) if it exports one; a command gets
	// _start. All of it under the start-up restrictions.
	vm.restrict = restrictInit
	if fn := vm.fns.initialize; fn != nil {
		if _, ok := vm.invoke(fn, nil, 0); !ok {
			vm.restrict = 0
			return fmt.Errorf("_initialize: %w", vm.failErr)
		}
		if fn := vm.fns.main; fn != nil {
			vm.stack[0], vm.stack[1] = 0, 0
			if _, ok := vm.invoke(fn, nil, 2); !ok {
				vm.restrict = 0
				return fmt.Errorf("main: %w", vm.failErr)
			}
		}
	} else if fn := vm.fns.start; fn != nil {
		if _, ok := vm.invoke(fn, nil, 0); !ok {
			vm.restrict = 0
			return fmt.Errorf("_start: %w", vm.failErr)
		}
	}
	vm.restrict = 0
	if fn := vm.fns.contextCreate; fn != nil {
		vm.stack[0], vm.stack[1] = rootContextID, 0
		if _, ok := vm.invoke(fn, nil, 2); !ok {
			return fmt.Errorf("proxy_on_context_create: %w", vm.failErr)
		}
	}
	if err := vm.startStep(vm.fns.vmStart, phaseVMStart, "proxy_on_vm_start", len(vm.p.cfg.VMConfiguration)); err != nil {
		return err
	}
	if err := vm.startStep(vm.fns.configure, phaseConfigure, "proxy_on_configure", len(vm.p.cfg.Configuration)); err != nil {
		return err
	}
	vm.started = true
	return nil
}

// startStep runs one boolean start callback (vm_start or configure) of the
// root context with the size of its buffer, readable during the call; a trap
// or a false result fails the VM.
func (vm *VM) startStep(fn api.Function, p phase, name string, size int) error {
	if fn == nil {
		return nil
	}
	vm.phase = p
	vm.stack[0], vm.stack[1] = rootContextID, uint64(size)
	r, ok := vm.invoke(fn, nil, 2)
	vm.phase = phaseNone
	if !ok {
		return fmt.Errorf("%s: %w", name, vm.failErr)
	}
	if uint32(r) == 0 {
		vm.failed, vm.failErr = true, fmt.Errorf("%s %w", name, errReturnedFalse)
		return vm.failErr
	}
	return nil
}

// invoke calls fn with the first nargs values of vm.stack for the context of stream s (nil:
// root). It returns the first result and false if the guest trapped, in which case the VM is
// failed. vm.mu must be held.
func (vm *VM) invoke(fn api.Function, s *Stream, nargs int) (uint64, bool) {
	if vm.failed {
		return 0, false
	}
	prevCur, prevEffSet, prevEff := vm.cur, vm.effSet, vm.eff
	vm.cur, vm.effSet, vm.eff = s, false, nil
	var err error
	if vm.trapNext {
		vm.trapNext = false
		err = errTestTrap
	} else {
		err = fn.CallWithStack(vm.ctx, vm.stack)
	}
	if vm.effSet {
		vm.lastEff = vm.eff
	}
	vm.cur, vm.effSet, vm.eff = prevCur, prevEffSet, prevEff
	if err != nil {
		vm.fail(err)
		return 0, false
	}
	return vm.stack[0], true
}

// fail marks the VM failed for good and logs the crash like Envoy ("Plugin Crash: ...").
func (vm *VM) fail(err error) {
	if vm.failed {
		return
	}
	vm.failed, vm.failErr = true, err
	vm.logString(LogCritical, "Plugin Crash: "+err.Error())
	if vm.p.cfg.FailurePolicy == FailReload && vm.role != roleCanary {
		vm.reloadAt = vm.p.clock.Now().Add(vm.p.reloadDelay(vm.reloads))
	}
}

// maybeReload restarts a failed VM under FailReload once its back-off has elapsed on the
// Clock. vm.mu must be held.
func (vm *VM) maybeReload() {
	if !vm.failed || vm.closed || vm.p.cfg.FailurePolicy != FailReload || vm.role == roleCanary {
		return
	}
	if vm.p.clock.Now().Before(vm.reloadAt) {
		return
	}
	vm.reloads++
	if err := vm.start(); err != nil {
		vm.failed = true
		vm.logString(LogError, "reload failed: "+err.Error())
		vm.reloadAt = vm.p.clock.Now().Add(vm.p.reloadDelay(vm.reloads))
		return
	}
	vm.reloads = 0
	vm.p.reloadCount.Add(1)
}

// Failed reports whether the VM has trapped (or failed to start) and not been reloaded since.
func (vm *VM) Failed() bool {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.failed
}

// Err returns the error that failed the VM, or nil.
func (vm *VM) Err() error {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.failErr
}

// TrapNextCallback makes the next guest callback on this VM trap instead of running.
// It is a test hook; product code never calls it.
func (vm *VM) TrapNextCallback() {
	vm.mu.Lock()
	vm.trapNext = true
	vm.mu.Unlock()
}

// MemoryPages returns the size of the VM's linear memory in 64 KiB pages.
func (vm *VM) MemoryPages() uint32 {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.mem == nil {
		return 0
	}
	return vm.mem.Size() / 65536
}

// shutdown runs the root context's proxy_on_done and proxy_on_delete and closes the instance.
func (vm *VM) shutdown(ctx context.Context) error {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	vm.closed = true
	if vm.inst == nil {
		return nil
	}
	if !vm.failed && vm.started {
		if fn := vm.fns.done; fn != nil {
			vm.stack[0] = rootContextID
			vm.pendingDone = true
			vm.invoke(fn, nil, 1)
			vm.pendingDone = false
		}
		if fn := vm.fns.del; fn != nil && !vm.failed {
			vm.stack[0] = rootContextID
			vm.invoke(fn, nil, 1)
		}
	}
	err := vm.inst.Close(ctx)
	vm.inst = nil
	vm.failed, vm.started = true, false
	if vm.failErr == nil {
		vm.failErr = errors.New("closed with its plugin")
	}
	return err
}

// stream returns the effective stream of the running callback (nil: root context).
func (vm *VM) stream() *Stream {
	if vm.effSet {
		return vm.eff
	}
	return vm.cur
}

func hostSetEffectiveContext(vm *VM, s []uint64) Status {
	id := u32(s, 0)
	if id == rootContextID {
		vm.effSet, vm.eff = true, nil
		return StatusOK
	}
	st := vm.streams[id]
	if st == nil {
		return StatusBadArgument
	}
	vm.effSet, vm.eff = true, st
	return StatusOK
}

func hostDone(vm *VM, s []uint64) Status {
	if vm.pendingDone {
		return StatusOK
	}
	return StatusNotFound
}

// allocTrap carries a trap of the guest allocator out of the host function that called it.
type allocTrap struct{ err error }

func (a allocTrap) Error() string { return "guest allocator trapped: " + a.err.Error() }

// writeOut copies data into guest memory allocated by the guest's allocator and stores the
// pointer and length in the two out-slots. Empty data: pointer 0, length 0, no allocation.
func (vm *VM) writeOut(data []byte, ptrSlot, sizeSlot uint32) Status {
	var ptr uint32
	if len(data) > 0 {
		prev := vm.restrict
		vm.restrict = restrictAlloc
		vm.allocStack[0] = uint64(len(data))
		err := vm.fnAlloc.CallWithStack(vm.ctx, vm.allocStack)
		vm.restrict = prev
		if err != nil {
			panic(allocTrap{err})
		}
		ptr = api.DecodeU32(vm.allocStack[0])
		if ptr == 0 || !vm.mem.Write(ptr, data) {
			return StatusInvalidMemoryAccess
		}
	}
	return memStatus(vm.mem.WriteUint32Le(ptrSlot, ptr) && vm.mem.WriteUint32Le(sizeSlot, uint32(len(data))))
}

// read returns a view of guest memory; it is invalid after any call into the guest.
func (vm *VM) read(ptr, size uint32) ([]byte, bool) {
	if size == 0 {
		return nil, true
	}
	return vm.mem.Read(ptr, size)
}

// readArg is read for the buffer a host call passes as arguments i (pointer) and i+1 (size),
// the way every proxy-wasm call passes its strings and buffers.
func (vm *VM) readArg(s []uint64, i int) ([]byte, bool) {
	return vm.read(u32(s, i), u32(s, i+1))
}
