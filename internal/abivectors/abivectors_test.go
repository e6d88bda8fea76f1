package abivectors

import "testing"

// TestLoad: the vectors load, and each valid one is as long as its pairs say (4 bytes of
// count, 8 of lengths per pair, each name and value plus a NUL), a check that needs no codec.
func TestLoad(t *testing.T) {
	v, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	valid, malformed := 0, 0
	for _, p := range v.Pairs {
		if p.Malformed {
			malformed++
			continue
		}
		valid++
		n := 4
		for _, kv := range p.Pairs {
			n += 8 + len(kv[0]) + 1 + len(kv[1]) + 1
		}
		if len(p.Bytes) != n {
			t.Errorf("%s: %d bytes, its pairs need %d", p.Name, len(p.Bytes), n)
		}
	}
	if valid == 0 || malformed == 0 {
		t.Errorf("%d valid and %d malformed vectors: want both kinds", valid, malformed)
	}
	if len(v.Status) != 13 || v.Status["OK"] != 0 || v.Status["UNIMPLEMENTED"] != 12 {
		t.Errorf("status numbers: %v", v.Status)
	}
}
