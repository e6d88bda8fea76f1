package main

import (
	"strings"
	"testing"
)

const sample = `goos: linux
cpu: Test CPU @ 1.00GHz
BenchmarkPaths-2   	 100	 400000 ns/op	 7000 ns/allowed	 9000 ns/denied	 2000 ns/floor	 1000 ns/nothing	 16000 ns/three	 7.000 x/allowed	 9.000 x/denied	 2.000 x/floor	 16.00 x/three	 9900 ns/cached	 9.9 x/cached	 1.1 x-denied/cached
BenchmarkPaths-2   	 100	 400000 ns/op	 7700 ns/allowed	 17000 ns/denied	 2000 ns/floor	 1100 ns/nothing	 16000 ns/three	 7.000 x/allowed	 15.45 x/denied	 1.818 x/floor	 14.55 x/three	 37400 ns/cached	 34 x/cached	 2.2 x-denied/cached
BenchmarkAllowed-2                       	  535142	      2500 ns/op	     378 B/op	       8 allocs/op
BenchmarkMemoryLinear-2      	       1	3887758730 ns/op	        64.00 pages-100k	        65.00 pages-1M	        64.00 pages-warm
`

func TestTable(t *testing.T) {
	in, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if in.cpu != "Test CPU @ 1.00GHz" || countOf(in) != 2 {
		t.Errorf("cpu %q, %d runs", in.cpu, countOf(in))
	}
	rows, missing := table(in)
	got := map[string]row{}
	for _, r := range rows {
		got[r.what] = r
	}
	for what, want := range map[string]row{
		"allowed request, 1 rule (remote_address)":   {measured: "7.00..7.70 us", ratio: "7.0x; 3.5..3.9x floor", target: "<= 12x nothing (goal 8x): met"},
		"denied request (429 local reply)":           {measured: "9.00..17.00 us", ratio: "9.0..15.4x; 4.5..8.5x floor", target: "<= 16x nothing: met"},
		"floor: the same + 4 trivial host calls":     {measured: "2.00 us", ratio: "1.8..2.0x"},
		"  denial cache vs local refusal (same run)": {measured: "1.10..2.20x denied", target: "<= 2x denied: MISSED (2.2x)"},
		"linear memory of one VM (64 KiB pages)":     {measured: "warm 64, 100k 64, 1M 65", target: "no growth 100k->1M: GREW"},
	} {
		r := got[what]
		r.what = ""
		if r != want {
			t.Errorf("%s: %+v, want %+v", what, r, want)
		}
	}
	if len(missing) == 0 {
		t.Error("missing benchmarks not reported")
	}
}

func TestBudget(t *testing.T) {
	for _, tt := range []struct {
		worst, limit, goal float64
		want               string
	}{
		{7.9, 12, 8, "<= 12x nothing (goal 8x): met"},
		{11.9, 12, 8, "<= 12x nothing: met; goal 8x: missed"},
		{12.1, 12, 8, "<= 12x nothing: MISSED (12.1x)"},
		{15, 16, 0, "<= 16x nothing: met"},
		{16.5, 16, 0, "<= 16x nothing: MISSED (16.5x)"},
	} {
		if got := budget(tt.worst, tt.limit, tt.goal, "nothing"); got != tt.want {
			t.Errorf("budget(%v, %v, %v) = %q, want %q", tt.worst, tt.limit, tt.goal, got, tt.want)
		}
	}
}

func TestParseRejectsGarbage(t *testing.T) {
	if _, err := parse(strings.NewReader("BenchmarkX-2 10 abc ns/op\n")); err == nil {
		t.Fatal("garbage accepted")
	}
}
