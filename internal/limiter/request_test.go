package limiter

import (
	"net/netip"
	"strings"
	"testing"
)

func TestClientIP(t *testing.T) {
	tests := []struct {
		name   string
		source string
		xff    string // "" = no header
		hops   int
		want   string // "" = no address
	}{
		{"peer ipv4", "10.0.0.1:1234", "", 0, "10.0.0.1"},
		{"peer ipv6", "[2001:db8::1]:443", "", 0, "2001:db8::1"},
		{"peer ipv4-mapped", "[::ffff:10.0.0.1]:1", "", 0, "10.0.0.1"},
		{"peer without port", "10.0.0.9", "", 0, "10.0.0.9"},
		{"peer missing", "", "", 0, ""},
		{"peer garbage", "not-an-ip:80", "", 0, ""},
		{"xff ignored without trusted hops", "10.0.0.1:1", "1.2.3.4", 0, "10.0.0.1"},
		{"one hop", "10.0.0.1:1", "203.0.113.7", 1, "203.0.113.7"},
		{"one hop, envoy appended peer", "10.0.0.1:1", "203.0.113.7, 10.0.0.1", 1, "203.0.113.7"},
		{"one hop, spoofed left entries", "10.0.0.1:1", "6.6.6.6, 203.0.113.7", 1, "203.0.113.7"},
		{"two hops", "10.0.0.1:1", "198.51.100.1, 203.0.113.7, 10.0.0.2", 2, "203.0.113.7"},
		{"two hops with append", "10.0.0.1:1", "198.51.100.1,203.0.113.7 ,10.0.0.2, 10.0.0.1", 2, "203.0.113.7"},
		{"header too short", "10.0.0.1:1", "203.0.113.7", 2, "10.0.0.1"},
		{"malformed entry", "10.0.0.1:1", "bogus, 203.0.113.7", 2, "10.0.0.1"},
		{"empty header", "10.0.0.1:1", "", 1, "10.0.0.1"},
		{"entry with port", "10.0.0.1:1", "203.0.113.7:5000", 1, "203.0.113.7"},
		{"ipv6 entry", "10.0.0.1:1", "2001:db8::7", 1, "2001:db8::7"},
		{"xff without peer", "", "203.0.113.7", 1, "203.0.113.7"},
		{"peer leading zero", "010.0.0.1:1", "", 0, ""},
		{"peer port out of range", "10.0.0.1:65536", "", 0, ""},
		{"peer empty port", "10.0.0.1:", "", 0, ""},
		{"peer short", "10.0.1:80", "", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := req{h: map[string]string{}, source: tt.source}
			if tt.xff != "" || tt.name == "empty header" {
				r.h["x-forwarded-for"] = tt.xff
			}
			ip, ok := clientIP(r, tt.hops)
			if tt.want == "" {
				if ok {
					t.Fatalf("got %v, want no address", netip.AddrFrom16(ip))
				}
				return
			}
			want := netip.MustParseAddr(tt.want).As16()
			if !ok || ip != want {
				t.Fatalf("got %v (ok=%v), want %s", netip.AddrFrom16(ip).Unmap(), ok, tt.want)
			}
		})
	}
}

func TestHostOf(t *testing.T) {
	for in, want := range map[string]string{
		"example.com": "example.com", "example.com:8080": "example.com", "[::1]:80": "::1",
		"[::1]": "::1", "::1": "::1", "host:notaport": "host:notaport", "": "",
	} {
		if got := string(hostOf([]byte(in))); got != want {
			t.Errorf("hostOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzXFF: any header and peer give an address or a clean fallback, never
// a panic, and the result is one of the header's entries or the peer.
// FuzzXFF holds clientIP to a plain reading of its contract, written with
// strings.Split and net/netip: walking X-Forwarded-For from the right, skip
// one last entry equal to the peer (Envoy's own append), take the hops-th
// entry; an entry that is not an address, or too few entries, gives the
// peer. ok is false only without a usable peer address.
func FuzzXFF(f *testing.F) {
	f.Add("203.0.113.7, 10.0.0.1", "10.0.0.1:1", 1)
	f.Add("203.0.113.7, 198.51.100.2, 10.0.0.1", "10.0.0.1:1", 2)
	f.Add("2001:db8::1,[::1]:80", "[::1]:1", 1)
	f.Add(",,,", "[::1]:1", 3)
	f.Add("\xff\xfe, 1.1.1.1", "", 2)
	f.Fuzz(func(t *testing.T, xff, source string, hops int) {
		if hops < 0 || hops > 64 {
			return
		}
		r := req{h: map[string]string{"x-forwarded-for": xff}, source: source}
		got, ok := clientIP(r, hops)
		want, wantOK := xffReference(xff, source, hops)
		if ok != wantOK || got != want {
			t.Fatalf("clientIP(xff %q, peer %q, hops %d) = %v %v, want %v %v", xff, source, hops, got, ok, want, wantOK)
		}
	})
}

// xffReference is clientIP's contract, written plainly.
func xffReference(xff, source string, hops int) ([16]byte, bool) {
	parse := func(s string) ([16]byte, bool) {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			return ap.Addr().Unmap().As16(), true
		}
		if a, err := netip.ParseAddr(s); err == nil {
			return a.Unmap().As16(), true
		}
		return [16]byte{}, false
	}
	peer, peerOK := parse(source)
	if hops == 0 {
		return peer, peerOK
	}
	entries := strings.Split(xff, ",")
	counted, skipped := 0, false
	for i := len(entries) - 1; i >= 0; i-- {
		a, ok := parse(strings.TrimSpace(entries[i]))
		if !ok {
			break
		}
		if counted == 0 && !skipped && peerOK && a == peer {
			skipped = true
			continue
		}
		if counted++; counted == hops {
			return a, true
		}
	}
	return peer, peerOK
}

// FuzzParseHostPort: parseHostPort reads what net/netip reads (an address
// and port, else an address), to the same 16 bytes, and nothing else.
func FuzzParseHostPort(f *testing.F) {
	for _, s := range []string{"1.2.3.4:80", "255.255.255.255", "01.2.3.4:1", "1.2.3.4:", "1.2.3.4:65536", "[::1]:1", "1..2.3",
		"::1:80", "[1.2.3.4]:80", "2001:db8::1", "[fe80::1%eth0]:443", "fe80::1%", "::ffff:1.2.3.4", "1:2:3:4:5:6:7::8",
		"1:2:3:4:5:6:1.2.3.4", "::", "1::", ":::", "1.2.3.4:0080", "12345::", "[::1]", "%x", "::%x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var got [16]byte
		ok := parseHostPort([]byte(s), &got)
		var want [16]byte
		wantOK := false
		if ap, err := netip.ParseAddrPort(s); err == nil {
			want, wantOK = ap.Addr().Unmap().As16(), true
		} else if a, err := netip.ParseAddr(s); err == nil {
			want, wantOK = a.Unmap().As16(), true
		}
		if ok != wantOK || got != want {
			t.Fatalf("parseHostPort(%q) = %v %v, netip says %v %v", s, got, ok, want, wantOK)
		}
	})
}

func FuzzHash(f *testing.F) {
	f.Add(uint64(1), []byte("hello"))
	f.Fuzz(func(t *testing.T, seed uint64, b []byte) {
		if hash64(seed, b) != hash64(seed, append([]byte(nil), b...)) {
			t.Fatal("hash is not a function of its input")
		}
	})
}

// FuzzAppendAddr: appendAddr writes what net/netip writes for the unmapped
// address, so a descriptor value is the same text whichever writes it.
func FuzzAppendAddr(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "::", "::1", "2001:db8::1", "2001:db8:0:0:1:0:0:1", "1:0:0:2:0:0:0:3", "::ffff:1.2.3.4", "::1.2.3.4", "fe80::1:2"} {
		a := netip.MustParseAddr(s).As16()
		f.Add(a[:])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) != 16 {
			return
		}
		ip := [16]byte(b)
		if got, want := string(appendAddr(nil, ip)), netip.AddrFrom16(ip).Unmap().String(); got != want {
			t.Fatalf("appendAddr(% x) = %q, netip says %q", ip, got, want)
		}
	})
}
