// Command benchtable turns the output of `go test -bench -count N` over
// ./filter and ./internal/bucket into the short table of BENCHMARKS.md: the
// CPU it ran on, each figure as the range (min..max) over the N runs, its
// target, and the request costs as multiples of the do-nothing module and of
// the floor measured in the same runs, which stay meaningful on a noisy
// machine. `make bench` runs it.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// result is one benchmark line: ns/op and every other metric by unit
// (allocs/op, ns/allowed...).
type result struct {
	nsPerOp float64
	metrics map[string]float64
}

// runs holds what `go test -bench` printed: the CPU line and every result
// of each benchmark, in order, one per -count run.
type runs struct {
	cpu     string
	results map[string][]result
}

// parse reads `go test -bench` output.
func parse(r io.Reader) (runs, error) {
	out := runs{results: map[string][]result{}}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if cpu, ok := strings.CutPrefix(line, "cpu: "); ok && out.cpu == "" {
			out.cpu = strings.TrimSpace(cpu)
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i]
		}
		res := result{metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return runs{}, fmt.Errorf("benchtable: %s: value %q: %w", name, f[i], err)
			}
			if f[i+1] == "ns/op" {
				res.nsPerOp = v
			} else {
				res.metrics[f[i+1]] = v
			}
		}
		out.results[name] = append(out.results[name], res)
	}
	return out, sc.Err()
}

// span is the range of one figure over the runs.
type span struct{ min, max float64 }

func (s span) format(scale float64, verb, unit string) string {
	lo, hi := fmt.Sprintf(verb, s.min/scale), fmt.Sprintf(verb, s.max/scale)
	if lo == hi {
		return lo + unit
	}
	return lo + ".." + hi + unit
}

// spanOf returns the range of f over rs.
func spanOf(rs []result, f func(result) float64) span {
	s := span{f(rs[0]), f(rs[0])}
	for _, r := range rs[1:] {
		v := f(r)
		s.min, s.max = min(s.min, v), max(s.max, v)
	}
	return s
}

func metric(unit string) func(result) float64 {
	return func(r result) float64 { return r.metrics[unit] }
}

func nsPerOp(r result) float64 { return r.nsPerOp }

// row is one line of the table.
type row struct {
	what, measured, ratio, target string
}

// Budgets of issue 11, as multiples of the do-nothing module.
const (
	allowedBudget = 12
	allowedGoal   = 8
	deniedBudget  = 16
	cachedBudget  = 2 // a refusal from the denial cache, as a multiple of a local refusal (issue 8)
)

// budget judges the worst run against a limit (and an optional goal), both
// multiples of the measure named by of.
func budget(worst, limit, goal float64, of string) string {
	switch {
	case goal > 0 && worst <= goal:
		return fmt.Sprintf("<= %gx %s (goal %gx): met", limit, of, goal)
	case worst <= limit && goal == 0:
		return fmt.Sprintf("<= %gx %s: met", limit, of)
	case worst <= limit:
		return fmt.Sprintf("<= %gx %s: met; goal %gx: missed", limit, of, goal)
	}
	return fmt.Sprintf("<= %gx %s: MISSED (%.1fx)", limit, of, worst)
}

func table(in runs) ([]row, []string) {
	var rows []row
	var missing []string
	get := func(name string) ([]result, bool) {
		r, ok := in.results[name]
		if !ok {
			missing = append(missing, name)
		}
		return r, ok
	}
	if paths, ok := get("Paths"); ok {
		us := func(name string) string { return spanOf(paths, metric("ns/"+name)).format(1000, "%.2f", " us") }
		rows = append(rows,
			row{"do-nothing module: 6 callbacks that return at once, no host call", us("nothing"), "1.0x", ""},
			row{"floor: the same + 4 trivial host calls", us("floor"), spanOf(paths, metric("x/floor")).format(1, "%.1f", "x"), ""})
		if _, ok := paths[0].metrics["ns/hostcalls"]; ok {
			rows = append(rows, row{"the same + an allowed request's host calls, no logic", us("hostcalls"), spanOf(paths, metric("x/hostcalls")).format(1, "%.1f", "x"), ""})
		}
		request := func(name, what string, limit, goal float64) {
			x := spanOf(paths, metric("x/"+name))
			overFloor := spanOf(paths, func(r result) float64 { return r.metrics["ns/"+name] / r.metrics["ns/floor"] })
			target := ""
			if limit > 0 {
				target = budget(x.max, limit, goal, "nothing")
			}
			rows = append(rows, row{what, us(name), x.format(1, "%.1f", "x") + "; " + overFloor.format(1, "%.1f", "x floor"), target})
		}
		request("allowed", "allowed request, 1 rule (remote_address)", allowedBudget, allowedGoal)
		request("denied", "denied request (429 local reply)", deniedBudget, 0)
		request("three", "allowed request, 3 rules, composite key", 0, 0)
		if _, ok := paths[0].metrics["ns/cached"]; ok {
			request("cached", "denied from the global tier's denial cache (no RLS call)", 0, 0)
			vsDenied := spanOf(paths, metric("x-denied/cached"))
			rows = append(rows, row{"  denial cache vs local refusal (same run)", vsDenied.format(1, "%.2f", "x denied"), "", budget(vsDenied.max, cachedBudget, 0, "denied")})
		}
	}
	if r, ok := get("AllowedPhases"); ok {
		phase := func(unit string) string { return spanOf(r, metric(unit)).format(1, "%.0f", "") }
		rows = append(rows, row{"  allowed, by callback: create / request headers / response headers / close",
			phase("ns/create") + " / " + phase("ns/request-headers") + " / " + phase("ns/response-headers") + " / " + phase("ns/close") + " ns", "", ""})
	}
	for _, a := range []struct{ name, what string }{
		{"Allowed", "allowed, alone: host allocations per request"},
		{"Denied", "denied, alone: host allocations per request"},
	} {
		if r, ok := get(a.name); ok {
			rows = append(rows, row{a.what, spanOf(r, nsPerOp).format(1000, "%.2f", " us/op") + ", " + spanOf(r, metric("allocs/op")).format(1, "%.0f", " allocs"), "", ""})
		}
	}
	native := func(name, what, target string) {
		if r, ok := get(name); ok {
			rows = append(rows, row{what, spanOf(r, nsPerOp).format(1, "%.1f", " ns/op") + ", " + spanOf(r, metric("allocs/op")).format(1, "%.0f", " allocs"), "", target})
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
			rows = append(rows, row{c.what, spanOf(r, metric("req/s")).format(1, "%.0f", " req/s") + ", " + spanOf(r, metric("casretries/req")).format(1, "%.4f", " CAS retries/req"), "", ""})
		}
	}
	if r, ok := get("Compile"); ok {
		rows = append(rows, row{"compile the module (no cache)", spanOf(r, nsPerOp).format(1e6, "%.0f", " ms") + "; .wasm " + spanOf(r, metric("wasm-bytes")).format(1e6, "%.2f", " MB"), "", ""})
	}
	if r, ok := get("Start8"); ok {
		rows = append(rows, row{"start canary + main + 8 workers", spanOf(r, nsPerOp).format(1e6, "%.0f", " ms"), "", ""})
	}
	if r, ok := get("MemoryLinear"); ok {
		grew := spanOf(r, func(r result) float64 { return r.metrics["pages-1M"] - r.metrics["pages-100k"] })
		flat := "flat"
		if grew.max > 0 {
			flat = "GREW"
		}
		pages := func(unit string) string { return spanOf(r, metric(unit)).format(1, "%.0f", "") }
		rows = append(rows, row{"linear memory of one VM (64 KiB pages)", "warm " + pages("pages-warm") + ", 100k " + pages("pages-100k") + ", 1M " + pages("pages-1M"), "", "no growth 100k->1M: " + flat})
	}
	if r, ok := get("SharedFootprint"); ok {
		rows = append(rows, row{"shared data after 1M distinct clients, 16384 slots",
			spanOf(r, metric("keys")).format(1, "%.0f", " keys") + ", " + spanOf(r, metric("bytes")).format(1024, "%.0f", " KiB") + ", " + spanOf(r, metric("bytes/slot")).format(1, "%.1f", " bytes/slot"), "", "<= slots/4+2 keys"})
	}
	return rows, missing
}

// countOf reports how many runs the request paths had.
func countOf(in runs) int { return len(in.results["Paths"]) }

func main() {
	in, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rows, missing := table(in)
	cpu := in.cpu
	if cpu == "" {
		cpu = "unknown CPU"
	}
	fmt.Printf("CPU: %s; each figure min..max over %d runs of `go test -bench -count`.\n\n", cpu, countOf(in))
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
