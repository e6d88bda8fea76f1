package config

import (
	"math"
	"reflect"
	"testing"

	"github.com/tidwall/gjson"
)

// TestReader: the exported reader reports what Parse reports, with the same
// messages and paths, for a document of another shape.
func TestReader(t *testing.T) {
	var r Reader
	doc := gjson.Parse(`{"name": 7, "port": 70000, "port": 1, "extra": true, "list": [1], "sub": "x"}`)
	o := r.Object(doc, "", "name", "port", "list", "sub")
	if _, ok := o.Str("name"); ok {
		t.Error("a number read as a string")
	}
	if _, ok := o.Int("port", 1, 65535); ok {
		t.Error("70000 read as a port")
	}
	if _, ok := o.Str("absent"); ok {
		t.Error("an absent field read")
	}
	if v, ok := o.Get("list"); !ok || Kind(v) != "an array" || o.Path("list") != "list" {
		t.Errorf("list: %v %v %q", v, ok, Kind(v))
	}
	if sub, _ := o.Get("sub"); r.Object(sub, o.Path("sub"), "a") != nil {
		t.Error("a string read as an object")
	}
	if n, ok := o.Int("port", math.MinInt64, math.MaxInt64); !ok || n != 70000 {
		t.Errorf("a repeated field keeps its first value: got %d %v", n, ok)
	}
	r.Add("sub.a", "custom")
	want := []Problem{
		{"port", "appears more than once"},
		{"extra", "unknown field (allowed here: name, port, list, sub)"},
		{"name", "must be a string, got a number"},
		{"port", "must be between 1 and 65535, got 70000"},
		{"sub", "must be a JSON object, got a string"},
		{"sub.a", "custom"},
	}
	if got := r.Problems(); !reflect.DeepEqual(got, want) {
		t.Errorf("problems\n%v\nwant\n%v", got, want)
	}
}
