package wasmhost

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func TestSharedDataCASRules(t *testing.T) {
	// One timeline on one store: each step sees the state the previous steps left.
	s := NewSharedData()
	steps := []struct {
		name    string
		op      string // "get" or "set"
		vmID    string
		key     string
		value   string
		cas     uint32
		wantSt  Status
		wantVal string
		wantCAS uint32
	}{
		{name: "missing key", op: "get", key: "a", wantSt: StatusNotFound},
		{name: "create with cas 0", op: "set", key: "a", value: "v1", wantSt: StatusOK},
		{name: "first cas is 1", op: "get", key: "a", wantSt: StatusOK, wantVal: "v1", wantCAS: 1},
		{name: "missing key created whatever cas", op: "set", key: "b", value: "w1", cas: 12345, wantSt: StatusOK},
		{name: "created key got next cas", op: "get", key: "b", wantSt: StatusOK, wantVal: "w1", wantCAS: 2},
		{name: "stale cas mismatches", op: "set", key: "a", value: "v2", cas: 2, wantSt: StatusCASMismatch},
		{name: "mismatch changes nothing", op: "get", key: "a", wantSt: StatusOK, wantVal: "v1", wantCAS: 1},
		{name: "matching cas", op: "set", key: "a", value: "v2", cas: 1, wantSt: StatusOK},
		{name: "counter is store-wide", op: "get", key: "a", wantSt: StatusOK, wantVal: "v2", wantCAS: 3},
		{name: "cas 0 is unconditional", op: "set", key: "a", value: "v3", cas: 0, wantSt: StatusOK},
		{name: "after unconditional", op: "get", key: "a", wantSt: StatusOK, wantVal: "v3", wantCAS: 4},
		{name: "old cas after overwrite", op: "set", key: "a", value: "x", cas: 3, wantSt: StatusCASMismatch},
		{name: "other vm_id does not see key", op: "get", vmID: "other", key: "a", wantSt: StatusNotFound},
		{name: "other vm_id shares the counter", op: "set", vmID: "other", key: "a", value: "o", cas: 4, wantSt: StatusOK},
		{name: "other vm_id value", op: "get", vmID: "other", key: "a", wantSt: StatusOK, wantVal: "o", wantCAS: 5},
		{name: "empty vm_id untouched", op: "get", key: "a", wantSt: StatusOK, wantVal: "v3", wantCAS: 4},
		{name: "empty value", op: "set", key: "e", value: "", wantSt: StatusOK},
		{name: "empty value read", op: "get", key: "e", wantSt: StatusOK, wantVal: "", wantCAS: 6},
	}
	for i, st := range steps {
		switch st.op {
		case "set":
			if got := s.Set(st.vmID, st.key, []byte(st.value), st.cas); got != st.wantSt {
				t.Fatalf("step %d (%s): Set = %v, want %v", i, st.name, got, st.wantSt)
			}
		case "get":
			v, cas, got := s.Get(st.vmID, st.key)
			if got != st.wantSt || string(v) != st.wantVal || cas != st.wantCAS {
				t.Fatalf("step %d (%s): Get = %q, %d, %v; want %q, %d, %v",
					i, st.name, v, cas, got, st.wantVal, st.wantCAS, st.wantSt)
			}
		}
	}
	if got, want := s.Len(""), 3; got != want {
		t.Errorf("Len(\"\") = %d, want %d", got, want)
	}
	if got, want := s.Size(""), len("a")+len("v3")+len("b")+len("w1")+len("e"); got != want {
		t.Errorf("Size(\"\") = %d, want %d", got, want)
	}
	if got := s.Len("other"); got != 1 {
		t.Errorf("Len(other) = %d, want 1", got)
	}
}

func TestSharedDataCASWrapSkipsZero(t *testing.T) {
	s := NewSharedData()
	s.SetNextCAS(0xFFFFFFFE)
	want := []uint32{0xFFFFFFFE, 0xFFFFFFFF, 1, 2}
	for i, w := range want {
		if st := s.Set("", "k", []byte{byte(i)}, 0); st != StatusOK {
			t.Fatalf("Set %d: %v", i, st)
		}
		_, cas, _ := s.Get("", "k")
		if cas != w {
			t.Fatalf("set %d: cas = %#x, want %#x", i, cas, w)
		}
	}
	// A cas of 0 never matches as "stale": it is an unconditional write.
	if st := s.Set("", "k", []byte("z"), 0); st != StatusOK {
		t.Fatalf("unconditional set after wrap: %v", st)
	}
}

func TestSharedDataCopies(t *testing.T) {
	s := NewSharedData()
	in := []byte("abc")
	s.Set("", "k", in, 0)
	in[0] = 'X'
	v, _, _ := s.Get("", "k")
	if string(v) != "abc" {
		t.Fatalf("Set did not copy: %q", v)
	}
	v[1] = 'Y'
	v2, _, _ := s.Get("", "k")
	if string(v2) != "abc" {
		t.Fatalf("Get did not copy: %q", v2)
	}
}

func TestSharedDataNamespaceReleasedWithLastPlugin(t *testing.T) {
	s := NewSharedData()
	s.acquire("vm")
	s.acquire("vm")
	s.Set("vm", "k", []byte("v"), 0)
	s.release("vm")
	if s.Len("vm") != 1 {
		t.Fatal("namespace dropped while a plugin still holds it")
	}
	s.release("vm")
	if s.Len("vm") != 0 {
		t.Fatal("namespace kept after the last plugin released it")
	}
}

// TestSharedDataConcurrentCAS runs increment loops with bounded retries on CAS_MISMATCH from
// many goroutines; no increment may be lost (run with -race).
func TestSharedDataConcurrentCAS(t *testing.T) {
	s := NewSharedData()
	s.Set("", "n", []byte("0"), 0)
	const workers, per = 8, 200
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				for {
					v, cas, st := s.Get("", "n")
					if st != StatusOK {
						t.Errorf("Get: %v", st)
						return
					}
					var n int
					fmt.Sscan(string(v), &n)
					if st := s.Set("", "n", []byte(fmt.Sprint(n+1)), cas); st == StatusOK {
						break
					} else if st != StatusCASMismatch {
						t.Errorf("Set: %v", st)
						return
					}
				}
				s.Set("", fmt.Sprintf("k%d", i%10), []byte("x"), 0)
				s.Len("")
				s.Size("")
			}
		}()
	}
	wg.Wait()
	v, _, _ := s.Get("", "n")
	if string(v) != fmt.Sprint(workers*per) {
		t.Fatalf("counter = %s, want %d", v, workers*per)
	}
}

func BenchmarkSharedDataGetSet(b *testing.B) {
	s := NewSharedData()
	s.Set("", "bucket", make([]byte, 16), 0)
	key := []byte("bucket")
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		v, cas, _ := s.getInto("", key, buf)
		s.setBytes("", key, "", v, cas)
	}
}

func TestSharedDataHostPathAllocs(t *testing.T) {
	s := NewSharedData()
	s.Set("", "bucket", make([]byte, 16), 0)
	key := []byte("bucket")
	buf := make([]byte, 0, 64)
	allocs := testing.AllocsPerRun(100, func() {
		v, cas, _ := s.getInto("", key, buf)
		s.setBytes("", key, "", v, cas)
	})
	if allocs != 0 {
		t.Fatalf("get+set of an existing key allocates %v times, want 0", allocs)
	}
}

func TestSharedDataAcrossVMsAndNamespaces(t *testing.T) {
	shared := NewSharedData()
	a, _ := newTestPlugin(t, PluginConfig{Name: "a", VMID: "ns", Shared: shared, Concurrency: 2})
	b, _ := newTestPlugin(t, PluginConfig{Name: "b", VMID: "other", Shared: shared})
	run := func(vm *VM, cmds string) map[string]string {
		s := vm.NewStream(info)
		defer s.Close()
		return outputs(s.RequestHeaders(req(cmds), true).Headers)
	}
	out := run(a.Worker(0), "sset:k=v1@0")
	if out["sset-k"] != "status=0" {
		t.Fatalf("set: %q", out["sset-k"])
	}
	_, cas, _ := shared.Get("ns", "k")
	casS := strconv.Itoa(int(cas))
	out = run(a.Worker(1), "sget:k,sset:k=v2@"+strconv.Itoa(int(cas)+1000))
	if out["sget-k"] != "v1/"+casS+"/status=0" {
		t.Errorf("other worker get: %q", out["sget-k"])
	}
	if out["sset-k"] != "status=8" {
		t.Errorf("stale cas from guest: %q, want CAS_MISMATCH (8)", out["sset-k"])
	}
	out = run(a.Main(), "sset:k=v3@"+casS+",sget:k")
	if out["sset-k"] != "status=0" || !strings.HasPrefix(out["sget-k"], "v3/") {
		t.Errorf("cas update from main VM: %q %q", out["sset-k"], out["sget-k"])
	}
	out = run(b.Worker(0), "sget:k")
	if out["sget-k"] != "/0/status=1" {
		t.Errorf("other vm_id sees the key: %q", out["sget-k"])
	}
	out = run(a.Worker(0), "sset:new=x@77,sget:missing")
	if out["sset-new"] != "status=0" || out["sget-missing"] != "/0/status=1" {
		t.Errorf("create with cas != 0 / missing get: %q %q", out["sset-new"], out["sget-missing"])
	}
}

// TestSharedDataFault: an injected fault fails the guests' calls it matches (call kind, key
// prefix) with its status, Count times or until removed, and leaves the store and the Go
// methods alone.
func TestSharedDataFault(t *testing.T) {
	shared := NewSharedData()
	p, _ := newTestPlugin(t, PluginConfig{Name: "a", VMID: "ns", Shared: shared})
	run := func(cmds string) map[string]string {
		s := p.Worker(0).NewStream(info)
		defer s.Close()
		return outputs(s.RequestHeaders(req(cmds), true).Headers)
	}
	shared.Set("ns", "deny/k", []byte("v"), 0)

	f := shared.InjectFault(SharedDataFault{Call: CallGetSharedData, KeyPrefix: "deny/", Status: StatusInternalFailure, Count: 2})
	out := run("sget:deny/k,sget:other,sset:deny/k=w@0")
	if out["sget-deny/k"] != "/0/status=10" || out["sget-other"] != "/0/status=1" || out["sset-deny/k"] != "status=0" {
		t.Fatalf("get with a fault on deny/: %v", out)
	}
	if v, _, st := shared.Get("ns", "deny/k"); st != StatusOK || string(v) != "w" {
		t.Fatalf("the Go Get is failed too, or the set did not run: %q %v", v, st)
	}
	out = run("sget:deny/k,sget:deny/k")
	if !strings.HasPrefix(out["sget-deny/k"], "w/") || !strings.HasSuffix(out["sget-deny/k"], "/status=0") || f.Failed() != 2 {
		t.Fatalf("after Count calls: %v, failed %d; want the fault gone after 2", out, f.Failed())
	}

	f = shared.InjectFault(SharedDataFault{Call: CallSetSharedData, KeyPrefix: "k"}) // until removed; Status OK: INTERNAL_FAILURE
	for i := 0; i < 3; i++ {
		if out := run("sset:k=x@0,sget:deny/k"); out["sset-k"] != "status=10" || !strings.HasPrefix(out["sget-deny/k"], "w/") {
			t.Fatalf("round %d with a set fault: %v", i, out)
		}
	}
	if _, _, st := shared.Get("ns", "k"); st != StatusNotFound || f.Failed() != 3 {
		t.Fatalf("a failed set wrote (status %v), or failed %d calls, want 3", st, f.Failed())
	}
	f.Remove()
	if out := run("sset:k=x@0"); out["sset-k"] != "status=0" {
		t.Fatalf("after Remove: %v", out)
	}
}
