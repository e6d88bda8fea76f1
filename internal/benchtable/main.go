// Command benchtable turns the output of `go test -bench` over ./filter and
// ./internal/bucket into the short table of BENCHMARKS.md: each figure with
// its target, and the request costs as ratios to the floor measured in the
// same run, which stay meaningful on a noisy machine. `make bench` runs it.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// result is one benchmark line: ns/op, allocs/op and custom metrics by unit.
type result struct {
	nsPerOp float64
	metrics map[string]float64
}

// parse reads `go test -bench` output. The first result of a name wins.
func parse(r io.Reader) (map[string]result, error) {
	out := map[string]result{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i]
		}
		if _, seen := out[name]; seen {
			continue
		}
		res := result{metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("%s: value %q: %v", name, f[i], err)
			}
			if f[i+1] == "ns/op" {
				res.nsPerOp = v
			} else {
				res.metrics[f[i+1]] = v
			}
		}
		out[name] = res
	}
	return out, sc.Err()
}

// row is one line of the table.
type row struct {
	what, measured, ratio, target string
}

func table(res map[string]result) ([]row, []string) {
	var rows []row
	var missing []string
	get := func(name string) (result, bool) {
		r, ok := res[name]
		if !ok {
			missing = append(missing, name)
		}
		return r, ok
	}
	floor, haveFloor := get("Floor")
	us := func(ns float64) string { return fmt.Sprintf("%.2f us/op", ns/1000) }
	ratio := func(ns float64) string {
		if !haveFloor || floor.nsPerOp == 0 {
			return ""
		}
		return fmt.Sprintf("%.1fx floor", ns/floor.nsPerOp)
	}
	verdict := func(ns, target, limit float64) string {
		switch {
		case ns <= target:
			return fmt.Sprintf("<= %.0f us: met", target/1000)
		case ns <= limit:
			return fmt.Sprintf("<= %.0f us: missed; <= %.0f us: met", target/1000, limit/1000)
		}
		return fmt.Sprintf("<= %.0f us: MISSED by %.2f us", limit/1000, (ns-limit)/1000)
	}
	request := func(name, what string, target, limit float64) {
		if r, ok := get(name); ok {
			t := ""
			if target > 0 {
				t = verdict(r.nsPerOp, target, limit)
			}
			rows = append(rows, row{what, fmt.Sprintf("%s, %.0f allocs", us(r.nsPerOp), r.metrics["allocs/op"]), ratio(r.nsPerOp), t})
		}
	}
	if haveFloor {
		rows = append(rows, row{"floor: 6 trivial callbacks + 4 trivial host calls", us(floor.nsPerOp), "1.0x", ""})
	}
	request("Allowed", "allowed request, 1 rule (remote_address)", 2000, 3000)
	if r, ok := get("AllowedPhases"); ok {
		m := r.metrics
		rows = append(rows, row{"  of which: create / request headers / response headers / close",
			fmt.Sprintf("%.0f / %.0f / %.0f / %.0f ns", m["ns/create"], m["ns/request-headers"], m["ns/response-headers"], m["ns/close"]), "", ""})
	}
	request("Denied", "denied request (429 local reply)", 3000, 3000)
	request("ThreeRules", "allowed request, 3 rules, composite key", 0, 0)
	native := func(name, what, target string) {
		if r, ok := get(name); ok {
			rows = append(rows, row{what, fmt.Sprintf("%.1f ns/op, %.0f allocs", r.nsPerOp, r.metrics["allocs/op"]), "", target})
		}
	}
	native("BaselineXTimeRate", "baseline: x/time/rate Limiter.Allow (native)", "")
	native("BaselineMutexBucket", "baseline: mutex + map token bucket (native)", "")
	native("BaselineMutexBucketParallel", "baseline: mutex + map token bucket, parallel", "")
	native("Take", "our bucket math: Take + Encode (native)", "<= 25 ns, 0 allocs")
	for _, c := range []struct{ name, what string }{
		{"ContentionHotKey", "8 VMs, one hot key"},
		{"Contention10kKeys", "8 VMs, 10,000 keys"},
	} {
		if r, ok := get(c.name); ok {
			rows = append(rows, row{c.what, fmt.Sprintf("%.0f req/s, %.4f CAS retries/req", r.metrics["req/s"], r.metrics["casretries/req"]), "", ""})
		}
	}
	if r, ok := get("Compile"); ok {
		rows = append(rows, row{"compile the module (no cache)", fmt.Sprintf("%.0f ms; .wasm %.2f MB", r.nsPerOp/1e6, r.metrics["wasm-bytes"]/1e6), "", ""})
	}
	if r, ok := get("Start8"); ok {
		rows = append(rows, row{"start canary + main + 8 workers", fmt.Sprintf("%.0f ms", r.nsPerOp/1e6), "", ""})
	}
	if r, ok := get("MemoryLinear"); ok {
		m := r.metrics
		flat := "flat"
		if m["pages-1M"] > m["pages-100k"] {
			flat = "GREW"
		}
		rows = append(rows, row{"linear memory of one VM (64 KiB pages)", fmt.Sprintf("warm %.0f, 100k %.0f, 1M %.0f", m["pages-warm"], m["pages-100k"], m["pages-1M"]), "", "no growth 100k->1M: " + flat})
	}
	if r, ok := get("SharedFootprint"); ok {
		m := r.metrics
		rows = append(rows, row{"shared data after 1M distinct clients, 16384 slots", fmt.Sprintf("%.0f keys, %.0f KiB, %.1f bytes/slot", m["keys"], m["bytes"]/1024, m["bytes/slot"]), "", "<= slots/4+2 keys"})
	}
	return rows, missing
}

func main() {
	res, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	rows, missing := table(res)
	fmt.Println("| measure | result | ratio | target |")
	fmt.Println("|---|---|---|---|")
	for _, r := range rows {
		fmt.Printf("| %s | %s | %s | %s |\n", r.what, r.measured, r.ratio, r.target)
	}
	if len(missing) > 0 {
		fmt.Fprintln(os.Stderr, "benchtable: missing benchmarks:", strings.Join(missing, ", "))
		os.Exit(1)
	}
}
