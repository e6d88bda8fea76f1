// Command guest is a TEST FIXTURE for package wasmhost, not product code: a tiny proxy-wasm
// filter for the standard Go toolchain (GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared) whose
// behaviour is driven by the test through the "x-test" request header (a comma-separated list
// of commands) and the plugin configuration (a semicolon-separated list of flags).
// Results are reported back by adding "x-out-*" request headers, through shared data and
// through metrics.
package main

import (
	"encoding/binary"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

func main() {}

//go:wasmimport env proxy_log
func proxyLog(level uint32, msg unsafe.Pointer, size uint32) uint32

//go:wasmimport env proxy_get_buffer_bytes
func proxyGetBufferBytes(typ, start, max uint32, ptr, size *uint32) uint32

//go:wasmimport env proxy_set_buffer_bytes
func proxySetBufferBytes(typ, start, length uint32, data unsafe.Pointer, size uint32) uint32

//go:wasmimport env proxy_get_header_map_value
func proxyGetHeaderMapValue(typ uint32, key unsafe.Pointer, keySize uint32, ptr, size *uint32) uint32

//go:wasmimport env proxy_get_header_map_pairs
func proxyGetHeaderMapPairs(typ uint32, ptr, size *uint32) uint32

//go:wasmimport env proxy_set_header_map_pairs
func proxySetHeaderMapPairs(typ uint32, data unsafe.Pointer, size uint32) uint32

//go:wasmimport env proxy_get_header_map_size
func proxyGetHeaderMapSize(typ uint32, size *uint32) uint32

//go:wasmimport env proxy_add_header_map_value
func proxyAddHeaderMapValue(typ uint32, key unsafe.Pointer, keySize uint32, val unsafe.Pointer, valSize uint32) uint32

//go:wasmimport env proxy_replace_header_map_value
func proxyReplaceHeaderMapValue(typ uint32, key unsafe.Pointer, keySize uint32, val unsafe.Pointer, valSize uint32) uint32

//go:wasmimport env proxy_remove_header_map_value
func proxyRemoveHeaderMapValue(typ uint32, key unsafe.Pointer, keySize uint32) uint32

//go:wasmimport env proxy_get_property
func proxyGetProperty(path unsafe.Pointer, pathSize uint32, ptr, size *uint32) uint32

//go:wasmimport env proxy_send_local_response
func proxySendLocalResponse(code uint32, details unsafe.Pointer, detailsSize uint32, body unsafe.Pointer, bodySize uint32, headers unsafe.Pointer, headersSize uint32, grpc int32) uint32

//go:wasmimport env proxy_get_shared_data
func proxyGetSharedData(key unsafe.Pointer, keySize uint32, ptr, size, cas *uint32) uint32

//go:wasmimport env proxy_set_shared_data
func proxySetSharedData(key unsafe.Pointer, keySize uint32, val unsafe.Pointer, valSize uint32, cas uint32) uint32

//go:wasmimport env proxy_define_metric
func proxyDefineMetric(typ uint32, name unsafe.Pointer, nameSize uint32, id *uint32) uint32

//go:wasmimport env proxy_increment_metric
func proxyIncrementMetric(id uint32, delta int64) uint32

//go:wasmimport env proxy_record_metric
func proxyRecordMetric(id uint32, value uint64) uint32

//go:wasmimport env proxy_get_metric
func proxyGetMetric(id uint32, value *uint64) uint32

//go:wasmimport env proxy_set_tick_period_milliseconds
func proxySetTickPeriod(ms uint32) uint32

//go:wasmimport env proxy_set_effective_context
func proxySetEffectiveContext(id uint32) uint32

//go:wasmimport env proxy_continue_stream
func proxyContinueStream(typ uint32) uint32

//go:wasmimport env proxy_close_stream
func proxyCloseStream(typ uint32) uint32

//go:wasmimport env proxy_get_current_time_nanoseconds
func proxyGetCurrentTime(t *uint64) uint32

// Memory handed to the host stays reachable from this map until take() adopts it.
var pending = map[uint32][]byte{}

//go:wasmexport proxy_abi_version_0_2_0
func abiVersion() {}

var allocTouchesHost bool // command "allocbad": the allocator calls a restricted host function

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(size uint32) uint32 {
	if allocTouchesHost {
		allocTouchesHost = false
		var t uint64
		proxyGetCurrentTime(&t) // restricted during allocation: traps
	}
	b := make([]byte, size)
	p := uint32(uintptr(unsafe.Pointer(&b[0])))
	pending[p] = b
	return p
}

func take(ptr, size uint32) string {
	if ptr == 0 {
		return ""
	}
	b := pending[ptr]
	delete(pending, ptr)
	return string(b[:size])
}

func ptr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }

func logf(level uint32, msg string) { proxyLog(level, ptr(msg), uint32(len(msg))) }

func st(s uint32) string { return "status=" + strconv.Itoa(int(s)) }

func getHeader(m uint32, k string) (string, uint32) {
	var p, n uint32
	s := proxyGetHeaderMapValue(m, ptr(k), uint32(len(k)), &p, &n)
	return take(p, n), s
}

func addHeader(m uint32, k, v string) uint32 {
	return proxyAddHeaderMapValue(m, ptr(k), uint32(len(k)), ptr(v), uint32(len(v)))
}

func out(k, v string) { addHeader(0, "x-out-"+k, v) }

func getBuffer(typ uint32) (string, uint32) {
	var p, n uint32
	s := proxyGetBufferBytes(typ, 0, 1<<20, &p, &n)
	return take(p, n), s
}

func setShared(k, v string, cas uint32) uint32 {
	return proxySetSharedData(ptr(k), uint32(len(k)), ptr(v), uint32(len(v)), cas)
}

func getShared(k string) (string, uint32, uint32) {
	var p, n, cas uint32
	s := proxyGetSharedData(ptr(k), uint32(len(k)), &p, &n, &cas)
	return take(p, n), cas, s
}

func getProperty(path string) (string, uint32) {
	var p, n uint32
	s := proxyGetProperty(ptr(path), uint32(len(path)), &p, &n)
	return take(p, n), s
}

func init() {
	switch os.Getenv("GUEST_INIT_TOUCH") {
	case "shared":
		getShared("init") // restricted while _initialize runs: traps
	case "log":
		logf(2, "init: proxy_log is allowed")
	}
}

var (
	config          string
	counter, gauge  uint32
	histogram       uint32
	requestCommands = map[uint32]string{} // context id -> x-test of that stream
)

func defineMetric(typ uint32, name string) uint32 {
	var id uint32
	proxyDefineMetric(typ, ptr(name), uint32(len(name)), &id)
	return id
}

//go:wasmexport proxy_on_context_create
func onContextCreate(id, parent uint32) {}

//go:wasmexport proxy_on_vm_start
func onVMStart(root, size uint32) uint32 {
	vmc, s6 := getBuffer(6)
	_, s7 := getBuffer(7)
	setShared("bufcheck.vm_start", "6="+vmc+"/"+st(s6)+" 7="+st(s7), 0)
	return 1
}

//go:wasmexport proxy_on_configure
func onConfigure(root, size uint32) uint32 {
	_, s6 := getBuffer(6)
	cfg, s7 := getBuffer(7)
	setShared("bufcheck.configure", "6="+st(s6)+" 7="+cfg+"/"+st(s7), 0)
	config = cfg
	counter = defineMetric(0, "guest.requests")
	gauge = defineMetric(1, "guest.last_size")
	histogram = defineMetric(2, "guest.sizes")
	ids := strconv.Itoa(int(counter)) + "," + strconv.Itoa(int(gauge)) + "," + strconv.Itoa(int(histogram))
	setShared("metric.ids", ids, 0)
	for _, f := range strings.Split(cfg, ";") {
		switch {
		case f == "fail":
			logf(5, "config invalid: rules[0].capacity: must be > 0")
			return 0
		case f == "trap":
			panic("configure trap")
		case f == "rootlocal":
			d := "from root"
			setShared("rootlocal", st(proxySendLocalResponse(500, ptr(d), uint32(len(d)), nil, 0, nil, 0, -1)), 0)
		case f == "rootprops":
			_, s1 := getProperty("request\x00path")
			_, s2 := getProperty("source\x00address")
			name, s3 := getProperty("plugin_name")
			setShared("rootprops", st(s1)+" "+st(s2)+" "+name+"/"+st(s3), 0)
		case strings.HasPrefix(f, "tick="):
			ms, _ := strconv.Atoi(f[5:])
			proxySetTickPeriod(uint32(ms))
		}
	}
	return 1
}

var ticks int

//go:wasmexport proxy_on_tick
func onTick(root uint32) {
	ticks++
	var now uint64
	proxyGetCurrentTime(&now)
	id := defineMetric(0, "guest.ticks")
	proxyIncrementMetric(id, 1)
}

//go:wasmexport proxy_on_request_headers
func onRequestHeaders(id, n, eos uint32) uint32 {
	cmds, _ := getHeader(0, "x-test")
	requestCommands[id] = cmds
	proxyIncrementMetric(counter, 1)
	action := uint32(0)
	for _, c := range strings.Split(cmds, ",") {
		name, arg, _ := strings.Cut(c, ":")
		switch name {
		case "add":
			k, v, _ := strings.Cut(arg, "=")
			out("add", st(addHeader(0, k, v)))
		case "replace":
			k, v, _ := strings.Cut(arg, "=")
			out("replace", st(proxyReplaceHeaderMapValue(0, ptr(k), uint32(len(k)), ptr(v), uint32(len(v)))))
		case "remove":
			out("remove", st(proxyRemoveHeaderMapValue(0, ptr(arg), uint32(len(arg)))))
		case "get":
			v, s := getHeader(0, arg)
			out("get", v+"/"+st(s))
		case "count":
			out("count", strconv.Itoa(int(n))+"/eos="+strconv.Itoa(int(eos)))
		case "pairs":
			var p, sz uint32
			s := proxyGetHeaderMapPairs(0, &p, &sz)
			raw := take(p, sz)
			out("pairs", strconv.Itoa(int(binary.LittleEndian.Uint32([]byte(raw))))+"/"+strconv.Itoa(len(raw))+"/"+st(s))
		case "setpairs":
			// Replace the whole map with a fixed one, or a malformed one when arg == "bad".
			var b []byte
			if arg == "bad" {
				b = []byte{5, 0, 0, 0, 1}
			} else {
				b = binary.LittleEndian.AppendUint32(nil, 2)
				b = binary.LittleEndian.AppendUint32(b, 5)
				b = binary.LittleEndian.AppendUint32(b, 4)
				b = binary.LittleEndian.AppendUint32(b, 7)
				b = binary.LittleEndian.AppendUint32(b, 1)
				b = append(b, ":path\x00/new\x00X-Mixed\x00y\x00"...)
			}
			proxySetHeaderMapPairs(0, unsafe.Pointer(&b[0]), uint32(len(b)))
		case "prop", "rawprop":
			path := arg
			if name == "prop" {
				path = strings.ReplaceAll(arg, ".", "\x00")
			}
			v, s := getProperty(path)
			out(name+"-"+arg, v+"/"+st(s))
		case "sget":
			v, cas, s := getShared(arg)
			out("sget-"+arg, v+"/"+strconv.Itoa(int(cas))+"/"+st(s))
		case "sset":
			kv, cas, _ := strings.Cut(arg, "@")
			k, v, _ := strings.Cut(kv, "=")
			c, _ := strconv.Atoi(cas)
			out("sset-"+k, st(setShared(k, v, uint32(c))))
		case "minc":
			d, _ := strconv.Atoi(arg)
			out("minc", st(proxyIncrementMetric(counter, int64(d))))
		case "gauge":
			v, _ := strconv.Atoi(arg)
			proxyRecordMetric(gauge, uint64(v))
		case "hist":
			v, _ := strconv.Atoi(arg)
			proxyRecordMetric(histogram, uint64(v))
		case "mget":
			var v uint64
			var s uint32
			switch arg {
			case "counter":
				s = proxyGetMetric(counter, &v)
			case "gauge":
				s = proxyGetMetric(gauge, &v)
			case "histogram":
				s = proxyGetMetric(histogram, &v)
			default:
				s = proxyGetMetric(999, &v)
			}
			out("mget-"+arg, strconv.Itoa(int(v))+"/"+st(s))
		case "local":
			// local:<code>:<details>:<body>
			parts := strings.SplitN(arg, ":", 3)
			code, _ := strconv.Atoi(parts[0])
			details, body := parts[1], parts[2]
			h := binary.LittleEndian.AppendUint32(nil, 2)
			h = binary.LittleEndian.AppendUint32(h, 11)
			h = binary.LittleEndian.AppendUint32(h, 1)
			h = binary.LittleEndian.AppendUint32(h, 12)
			h = binary.LittleEndian.AppendUint32(h, 16)
			h = append(h, "x-ratelimit\x000\x00content-type\x00application/json\x00"...)
			if body == "" {
				h = binary.LittleEndian.AppendUint32(nil, 1)
				h = binary.LittleEndian.AppendUint32(h, 11)
				h = binary.LittleEndian.AppendUint32(h, 1)
				h = append(h, "x-ratelimit\x000\x00"...)
			}
			s := proxySendLocalResponse(uint32(code), ptr(details), uint32(len(details)), ptr(body), uint32(len(body)),
				unsafe.Pointer(&h[0]), uint32(len(h)), -1)
			out("local", st(s))
		case "allocbad":
			allocTouchesHost = true
			getHeader(0, "x-test")
		case "log":
			lv, msg, _ := strings.Cut(arg, ":")
			l, _ := strconv.Atoi(lv)
			out("log", st(proxyLog(uint32(l), ptr(msg), uint32(len(msg)))))
		case "effective":
			cid, _ := strconv.Atoi(arg)
			out("effective", st(proxySetEffectiveContext(uint32(cid))))
		case "env":
			out("env", os.Getenv(arg))
		case "time":
			var now uint64
			proxyGetCurrentTime(&now)
			out("time", strconv.FormatUint(now, 10)+"/"+strconv.FormatInt(time.Now().UnixNano(), 10))
		case "stdout":
			os.Stdout.WriteString(arg + "\n")
		case "stderr":
			println(arg)
		case "pause":
			action = 1
		case "continue", "closestream":
			// Recorded in shared data: continuing may take the request headers away.
			typ, _ := strconv.Atoi(arg)
			s := proxyContinueStream
			if name == "closestream" {
				s = proxyCloseStream
			}
			setShared(name+arg+"."+strconv.Itoa(int(id)), st(s(uint32(typ))), 0)
		case "reqmap":
			// Whether the request headers are still reachable, recorded in shared data.
			_, s := getHeader(0, ":path")
			setShared("reqmap."+strconv.Itoa(int(id)), st(s), 0)
		case "panic":
			panic("guest panic on request")
		}
	}
	return action
}

//go:wasmexport proxy_on_request_body
func onRequestBody(id, size, eos uint32) uint32 {
	_, s := getHeader(0, ":path")
	body, _ := getBuffer(0)
	setShared("req_body."+strconv.Itoa(int(id)), body+"|"+st(s), 0)
	if strings.Contains(requestCommands[id], "bodypause") && eos == 0 {
		return 1 // StopIterationAndBuffer: Envoy buffers and shows all data next time
	}
	if strings.Contains(requestCommands[id], "bodyrewrite") {
		nb := "rewritten"
		proxySetBufferBytes(0, 0, size, ptr(nb), uint32(len(nb)))
	}
	return 0
}

//go:wasmexport proxy_on_response_headers
func onResponseHeaders(id, n, eos uint32) uint32 {
	_, reqSt := getHeader(0, ":path")
	status, _ := getHeader(2, ":status")
	addHeader(2, "x-resp-seen", status+"/req-headers-"+st(reqSt))
	var pp, pn uint32
	ps := proxyGetHeaderMapPairs(0, &pp, &pn)
	take(pp, pn)
	addHeader(2, "x-req-pairs", st(ps)+"/ptr="+strconv.Itoa(int(pp))+"/len="+strconv.Itoa(int(pn)))
	if strings.Contains(requestCommands[id], "resppanic") {
		panic("guest panic on response")
	}
	if strings.Contains(requestCommands[id], "resplocal") {
		d := "denied in response"
		proxySendLocalResponse(403, ptr(d), uint32(len(d)), nil, 0, nil, 0, -1)
	}
	code, _ := getProperty("response\x00code")
	if len(code) == 8 {
		addHeader(2, "x-resp-code", strconv.Itoa(int(binary.LittleEndian.Uint64([]byte(code)))))
	}
	return 0
}

//go:wasmexport proxy_on_response_body
func onResponseBody(id, size, eos uint32) uint32 {
	body, _ := getBuffer(1)
	nb := "[" + body + "]"
	proxySetBufferBytes(1, 0, size, ptr(nb), uint32(len(nb)))
	return 0
}

//go:wasmexport proxy_on_log
func onLog(id uint32) {
	path, s0 := getHeader(0, ":path")
	status, s2 := getHeader(2, ":status")
	setShared("log."+strconv.Itoa(int(id)), path+"/"+st(s0)+" "+status+"/"+st(s2), 0)
	var size, p, n uint32
	sz := proxyGetHeaderMapSize(0, &size)
	ps := proxyGetHeaderMapPairs(0, &p, &n)
	take(p, n)
	setShared("logx."+strconv.Itoa(int(id)), "size:"+st(sz)+" pairs:"+st(ps)+"/"+strconv.Itoa(int(n)), 0)
}

//go:wasmexport proxy_on_done
func onDone(id uint32) uint32 { return 1 }

//go:wasmexport proxy_on_delete
func onDelete(id uint32) {
	delete(requestCommands, id)
	setShared("deleted."+strconv.Itoa(int(id)), "1", 0)
}
