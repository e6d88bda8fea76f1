package wasmhost

import (
	"crypto/rand"
	"encoding/binary"
	"sort"

	"github.com/tetratelabs/wazero/api"
)

// WASI errno values used by Envoy's stub WASI.
const (
	errnoSuccess = 0
	errnoBadf    = 8
	errnoFault   = 21
	errnoInval   = 28
	errnoNoent   = 44
	errnoNosys   = 52
	errnoNotsup  = 58
)

// wasiFunctions returns Envoy's stub WASI (>= 1.33), offered under both
// "wasi_snapshot_preview1" and "wasi_unstable". Nothing else of WASI exists: a module that
// imports, say, path_filestat_get fails to load, as in Envoy.
func wasiFunctions() []hostFunc {
	const (
		ini   = restrictInit
		both  = restrictInit | restrictAlloc
		never = 0
	)
	return []hostFunc{
		i32Func("args_get", 2, ini, func(vm *VM, s []uint64) { setErrno(s, errnoSuccess) }),
		i32Func("args_sizes_get", 2, ini, wasiArgsSizesGet),
		i32Func("environ_get", 2, ini, wasiEnvironGet),
		i32Func("environ_sizes_get", 2, ini, wasiEnvironSizesGet),
		{name: "clock_time_get", params: []api.ValueType{i32, i64, i32}, results: ints(1), allow: both, fn: wasiClockTimeGet},
		i32Func("fd_close", 1, ini, func(vm *VM, s []uint64) { vm.logString(LogError, "wasi_unstable fd_close"); setErrno(s, errnoSuccess) }),
		i32Func("fd_fdstat_get", 2, ini, wasiFdFdstatGet),
		i32Func("fd_fdstat_set_flags", 2, ini, func(vm *VM, s []uint64) { setErrno(s, errnoNosys) }),
		i32Func("fd_prestat_get", 2, ini, func(vm *VM, s []uint64) { setErrno(s, errnoBadf) }),
		i32Func("fd_prestat_dir_name", 3, ini, func(vm *VM, s []uint64) { setErrno(s, errnoNosys) }),
		i32Func("fd_write", 4, both, wasiFdWrite),
		i32Func("fd_read", 4, never, func(vm *VM, s []uint64) { setErrno(s, errnoNosys) }),
		{name: "fd_seek", params: []api.ValueType{i32, i64, i32, i32}, results: ints(1), fn: func(vm *VM, s []uint64) {
			vm.logString(LogError, "wasi_unstable fd_seek")
			setErrno(s, errnoSuccess)
		}},
		{name: "path_open", params: []api.ValueType{i32, i32, i32, i32, i32, i64, i64, i32, i32}, results: ints(1),
			fn: func(vm *VM, s []uint64) { setErrno(s, errnoNoent) }},
		i32Func("poll_oneoff", 4, both, wasiPollOneoff),
		{name: "proc_exit", params: ints(1), fn: wasiProcExit, allow: both},
		i32Func("random_get", 2, ini, wasiRandomGet),
		i32Func("sched_yield", 0, never, func(vm *VM, s []uint64) { setErrno(s, errnoSuccess) }),
	}
}

func setErrno(s []uint64, errno uint32) { s[0] = uint64(errno) }

// memErrno is memStatus for WASI: success if the closing writes to guest memory succeeded
// (ok), else EFAULT.
func memErrno(ok bool) uint32 {
	if ok {
		return errnoSuccess
	}
	return errnoFault
}

func wasiArgsSizesGet(vm *VM, s []uint64) {
	setErrno(s, memErrno(vm.mem.WriteUint32Le(u32(s, 0), 0) && vm.mem.WriteUint32Le(u32(s, 1), 0)))
}

// environ returns the configured environment as sorted "K=V" strings.
func (p *Plugin) environ() []string {
	env := make([]string, 0, len(p.cfg.Env))
	for k, v := range p.cfg.Env {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env
}

func wasiEnvironSizesGet(vm *VM, s []uint64) {
	env := vm.p.environ()
	size := 0
	for _, e := range env {
		size += len(e) + 1
	}
	setErrno(s, memErrno(vm.mem.WriteUint32Le(u32(s, 0), uint32(len(env))) && vm.mem.WriteUint32Le(u32(s, 1), uint32(size))))
}

func wasiEnvironGet(vm *VM, s []uint64) {
	ptrs, buf := u32(s, 0), u32(s, 1)
	for i, e := range vm.p.environ() {
		b := append([]byte(e), 0)
		if !vm.mem.WriteUint32Le(ptrs+uint32(4*i), buf) || !vm.mem.Write(buf, b) {
			setErrno(s, errnoFault)
			return
		}
		buf += uint32(len(b))
	}
	setErrno(s, errnoSuccess)
}

// wasiClockTimeGet reads the plugin Clock: realtime (0) as Unix ns, monotonic (1) as ns since
// the plugin started (plus 1 s), never decreasing per VM. Other clocks are ENOTSUP.
func wasiClockTimeGet(vm *VM, s []uint64) {
	var t int64
	switch u32(s, 0) {
	case 0:
		t = vm.p.clock.Now().UnixNano()
	case 1:
		t = vm.monotonic()
	default:
		setErrno(s, errnoNotsup)
		return
	}
	setErrno(s, memErrno(vm.mem.WriteUint64Le(u32(s, 2), uint64(t))))
}

// wasiFdFdstatGet answers for stdout and stderr only, like Envoy: a zero fdstat with the
// fd_write right; other fds are EBADF.
func wasiFdFdstatGet(vm *VM, s []uint64) {
	fd := u32(s, 0)
	if fd != 1 && fd != 2 {
		setErrno(s, errnoBadf)
		return
	}
	var st [24]byte
	binary.LittleEndian.PutUint64(st[8:], 64) // __WASI_RIGHTS_FD_WRITE
	setErrno(s, memErrno(vm.mem.Write(u32(s, 1), st[:])))
}

// wasiFdWrite turns each write to fd 1 or 2 into one info or error log message, without
// one trailing newline, like Envoy (so Go's runtime prints arrive in pieces, as there).
func wasiFdWrite(vm *VM, s []uint64) {
	fd, iovs, n, out := u32(s, 0), u32(s, 1), u32(s, 2), u32(s, 3)
	if fd != 1 && fd != 2 {
		setErrno(s, errnoBadf)
		return
	}
	var total uint32
	vm.lines = vm.lines[:0]
	for i := uint32(0); i < n; i++ {
		ptr, ok1 := vm.mem.ReadUint32Le(iovs + 8*i)
		l, ok2 := vm.mem.ReadUint32Le(iovs + 8*i + 4)
		if !ok1 || !ok2 {
			setErrno(s, errnoFault)
			return
		}
		b, ok := vm.read(ptr, l)
		if !ok {
			setErrno(s, errnoFault)
			return
		}
		vm.lines = append(vm.lines, b...)
		total += l
	}
	if msg := vm.lines; len(msg) > 0 {
		if msg[len(msg)-1] == '\n' {
			msg = msg[:len(msg)-1]
		}
		vm.logBytes(fdLevel(fd), msg)
	}
	setErrno(s, memErrno(vm.mem.WriteUint32Le(out, total)))
}

// wasiPollOneoff returns at once with no events, like Envoy's stub (after cpp-host #533).
func wasiPollOneoff(vm *VM, s []uint64) {
	setErrno(s, memErrno(vm.mem.WriteUint32Le(u32(s, 3), 0)))
}

// wasiProcExit is Envoy's stub (proxy-wasm-cpp-host): it logs an error, without the exit
// code, and returns, so the guest runs on after the call. A standard-Go c-shared module never
// gets here on a fatal error: its runtime crashes first (GOTRACEBACK=crash for libraries, the
// wasm unreachable instruction), which traps. Only os.Exit reaches it, and then returns.
func wasiProcExit(vm *VM, _ []uint64) {
	vm.logString(LogError, "wasi_unstable proc_exit")
}

// maxRandomGet is cpp-host's limit on one random_get.
const maxRandomGet = 64 << 10

func wasiRandomGet(vm *VM, s []uint64) {
	if u32(s, 1) > maxRandomGet {
		setErrno(s, errnoInval)
		return
	}
	b, ok := vm.readArg(s, 0)
	if !ok {
		setErrno(s, errnoFault)
		return
	}
	_, _ = rand.Read(b)
	setErrno(s, errnoSuccess)
}
