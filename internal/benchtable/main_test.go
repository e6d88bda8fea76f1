package main

import (
	"strings"
	"testing"
)

const sample = `goos: linux
BenchmarkFloor-2                         	 1778554	      1000 ns/op	     159 B/op	       4 allocs/op
BenchmarkAllowed-2                       	  535142	      2500 ns/op	     378 B/op	       8 allocs/op
BenchmarkDenied-2                        	  478221	      3500 ns/op	    1431 B/op	      22 allocs/op
BenchmarkMemoryLinear-2      	       1	3887758730 ns/op	        64.00 pages-100k	        65.00 pages-1M	        64.00 pages-warm
`

func TestTable(t *testing.T) {
	res, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	rows, missing := table(res)
	got := map[string]row{}
	for _, r := range rows {
		got[r.what] = r
	}
	if r := got["allowed request, 1 rule (remote_address)"]; r.ratio != "2.5x floor" || !strings.Contains(r.target, "missed; <= 3 us: met") {
		t.Errorf("allowed row %+v", r)
	}
	if r := got["denied request (429 local reply)"]; !strings.Contains(r.target, "MISSED by 0.50 us") {
		t.Errorf("denied row %+v", r)
	}
	if r := got["linear memory of one VM (64 KiB pages)"]; !strings.HasSuffix(r.target, "GREW") {
		t.Errorf("memory row %+v", r)
	}
	if len(missing) == 0 {
		t.Error("missing benchmarks not reported")
	}
}

func TestParseRejectsGarbage(t *testing.T) {
	if _, err := parse(strings.NewReader("BenchmarkX-2 10 abc ns/op\n")); err == nil {
		t.Fatal("garbage accepted")
	}
}
