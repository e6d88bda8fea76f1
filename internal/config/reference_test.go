package config

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestReferenceNamesEveryLimit: the README's configuration reference states
// each range and default the parser enforces, written from the constants
// here, so changing a limit without the reference fails.
func TestReferenceNamesEveryLimit(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(readme)
	start := strings.Index(doc, "\n## Configuration\n")
	end := strings.Index(doc, "\n### Headers\n")
	if start < 0 || end < start {
		t.Fatal("README has no Configuration section ending at Headers")
	}
	ref := doc[start:end]
	itoa := func(n int64) string { return strconv.FormatInt(n, 10) }
	want := []struct{ limit, text string }{
		{"MaxRules", "holds 1 to " + itoa(MaxRules) + " rules"},
		{"MaxRules", "required, 1 to " + itoa(MaxRules) + " rules"},
		{"MaxNameLen", "1 to " + itoa(MaxNameLen) + " characters: letters, digits, `-`, `_`, `.`; unique"},
		{"MaxKeyParts, no repeated part", "1 to " + itoa(MaxKeyParts) + " parts, none repeated"},
		{"capacity", "1 .. 2^63-1 | bucket size"},
		{"refill >= 1", "| `refill` | required | 1 .. 2^63-1 |"},
		{"MinInterval", short(MinInterval) + " .. 2562047h"},
		{"cost", "1 .. `capacity`; default 1"},
		{"requests_per_unit", "1 .. 2^32-1"},
		{"MaxTrustedHops", "0 .. " + itoa(MaxTrustedHops) + "; default 0"},
		{"DefaultStatus", "400 .. 599; default " + itoa(DefaultStatus)},
		{"MaxBodyBytes", "at most " + itoa(MaxBodyBytes>>10) + " KiB (" + itoa(MaxBodyBytes) + " bytes)"},
		{"slots", "| `slots` | " + itoa(MinSlots) + " .. " + itoa(MaxSlots) + "; default " + itoa(DefaultSlots) + " |"},
		{"cache_slots", "| `cache_slots` | " + itoa(MinSlots) + " .. " + itoa(MaxSlots) + "; default " + itoa(DefaultSlots) + " |"},
		{"MaxClusterLen", "1 to " + itoa(MaxClusterLen) + " printable characters, no spaces"},
		{"RLS timeout", short(MinRLSTimeout) + " .. " + short(MaxRLSTimeout) + "; default " + short(DefaultRLSTimeout)},
	}
	for _, w := range want {
		if !strings.Contains(ref, w.text) {
			t.Errorf("the configuration reference does not state %s: no %q", w.limit, w.text)
		}
	}
}

// short writes a duration the way the reference does: 1m, not 1m0s.
func short(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	return s
}
