package wasmhost

import (
	"strconv"
)

// LogLevel is a proxy-wasm log level, from LogTrace (0) to LogCritical (5).
type LogLevel int

// Log levels of proxy_log.
const (
	LogTrace LogLevel = iota
	LogDebug
	LogInfo
	LogWarn
	LogError
	LogCritical
)

func (l LogLevel) String() string {
	switch l {
	case LogTrace:
		return "trace"
	case LogDebug:
		return "debug"
	case LogInfo:
		return "info"
	case LogWarn:
		return "warn"
	case LogError:
		return "error"
	case LogCritical:
		return "critical"
	}
	return "LogLevel(" + strconv.Itoa(int(l)) + ")"
}

// hostLog is proxy_log(level, message): an unknown level is BAD_ARGUMENT before the message
// is even read, as in cpp-host.
func hostLog(vm *VM, s []uint64) Status {
	level := LogLevel(int32(u32(s, 0)))
	if level < LogTrace || level > LogCritical {
		return StatusBadArgument
	}
	msg, ok := vm.readArg(s, 1)
	if !ok {
		return StatusInvalidMemoryAccess
	}
	vm.logBytes(level, msg)
	return StatusOK
}

func hostGetLogLevel(vm *VM, s []uint64) Status {
	return memStatus(vm.mem.WriteUint32Le(u32(s, 0), uint32(vm.p.cfg.LogLevel)))
}

// logString delivers a log line to the plugin's Log function and the canary capture.
func (vm *VM) logString(level LogLevel, msg string) {
	if vm.capture != nil && level >= LogError {
		*vm.capture = append(*vm.capture, level.String()+": "+msg)
	}
	if l := vm.p.cfg.Log; l != nil {
		l(level, vm.name, msg)
	}
}

// logBytes is logString for a message in guest memory; it allocates only when someone listens.
func (vm *VM) logBytes(level LogLevel, msg []byte) {
	if level < vm.p.cfg.LogLevel {
		return
	}
	if vm.p.cfg.Log == nil && (vm.capture == nil || level < LogError) {
		return
	}
	vm.logString(level, string(msg))
}

func fdLevel(fd uint32) LogLevel {
	if fd == 2 {
		return LogError
	}
	return LogInfo
}
