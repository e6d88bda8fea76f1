package rls

import (
	"bytes"
	"testing"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type entry struct{ k, v string }

type desc struct {
	entries []entry
	hits    uint64
}

// TestEncodeRoundTrip: what the Encoder writes is read back by the real
// generated types as the request we meant.
func TestEncodeRoundTrip(t *testing.T) {
	long := string(bytes.Repeat([]byte("k"), 300)) // lengths past one varint byte
	tests := []struct {
		name   string
		domain string
		hits   uint32
		descs  []desc
	}{
		{"one", "tokengate", 0, []desc{{entries: []entry{{"rule", "per-key"}, {"header:x-api-key", "abc"}}}}},
		{"hits", "tokengate", 3, []desc{{entries: []entry{{"rule", "r"}, {"path", "/a"}}, hits: 3}}},
		{"several", "d", 0, []desc{
			{entries: []entry{{"rule", "a"}, {"remote_address", "10.0.0.1"}}, hits: 1},
			{entries: []entry{{"rule", "b"}, {"method", "GET"}, {"host", "x.example"}}, hits: 7},
			{entries: []entry{{"rule", "c"}}},
		}},
		{"long", long, 0, []desc{{entries: []entry{{"rule", long}, {long, long + long}}, hits: 1 << 40}}},
		{"no descriptors", "d", 0, nil},
		{"utf8", "tokengate", 0, []desc{{entries: []entry{{"header:x-user", "zoë ✓"}}}}},
	}
	var e Encoder
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := &rlsv3.RateLimitRequest{Domain: tc.domain, HitsAddend: tc.hits}
			e.Reset(tc.domain, tc.hits)
			for _, d := range tc.descs {
				pd := &commonv3.RateLimitDescriptor{}
				e.Begin()
				for _, en := range d.entries {
					e.Entry(en.k, []byte(en.v))
					pd.Entries = append(pd.Entries, &commonv3.RateLimitDescriptor_Entry{Key: en.k, Value: en.v})
				}
				e.End(d.hits)
				if d.hits > 0 {
					pd.HitsAddend = wrapperspb.UInt64(d.hits)
				}
				want.Descriptors = append(want.Descriptors, pd)
			}
			got := &rlsv3.RateLimitRequest{}
			if err := proto.Unmarshal(e.Bytes(), got); err != nil {
				t.Fatalf("the real type rejects the encoding: %v", err)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("got  %v\nwant %v", got, want)
			}
			if err := got.ValidateAll(); err != nil {
				t.Errorf("the request fails the protocol's validation: %v", err)
			}
		})
	}
}

// TestDecodeRoundTrip: answers written by the real generated types, extra
// fields included, decode to what they say.
func TestDecodeRoundTrip(t *testing.T) {
	over := &rlsv3.RateLimitResponse_DescriptorStatus{
		Code:               rlsv3.RateLimitResponse_OVER_LIMIT,
		CurrentLimit:       &rlsv3.RateLimitResponse_RateLimit{Name: "x", RequestsPerUnit: 100, Unit: rlsv3.RateLimitResponse_RateLimit_MINUTE},
		LimitRemaining:     0,
		DurationUntilReset: durationpb.New(42*time.Second + 5*time.Millisecond),
	}
	ok := &rlsv3.RateLimitResponse_DescriptorStatus{
		Code:           rlsv3.RateLimitResponse_OK,
		CurrentLimit:   &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: 5, Unit: rlsv3.RateLimitResponse_RateLimit_SECOND},
		LimitRemaining: 4,
	}
	tests := []struct {
		name string
		msg  *rlsv3.RateLimitResponse
		want Response
	}{
		{"empty", &rlsv3.RateLimitResponse{}, Response{}},
		{"ok without limit", &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK,
			Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{{Code: rlsv3.RateLimitResponse_OK}}},
			Response{Overall: CodeOK, Statuses: []Status{{Code: CodeOK}}}},
		{"over and ok", &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT,
			Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{over, ok}},
			Response{Overall: CodeOverLimit, Statuses: []Status{
				{Code: CodeOverLimit, HasLimit: true, RequestsPerUnit: 100, Unit: 2, HasReset: true, UntilReset: int64(42*time.Second + 5*time.Millisecond)},
				{Code: CodeOK, HasLimit: true, RequestsPerUnit: 5, Unit: 1, Remaining: 4},
			}}},
		{"unknown fields skipped", &rlsv3.RateLimitResponse{
			OverallCode:          rlsv3.RateLimitResponse_OK,
			Statuses:             []*rlsv3.RateLimitResponse_DescriptorStatus{ok},
			ResponseHeadersToAdd: []*corev3.HeaderValue{{Key: "x-a", Value: "b"}},
			RequestHeadersToAdd:  []*corev3.HeaderValue{{Key: "x-c", Value: "d"}},
			RawBody:              []byte("body"),
			DynamicMetadata:      &structpb.Struct{Fields: map[string]*structpb.Value{"k": structpb.NewNumberValue(1.5)}},
			Quota:                &rlsv3.RateLimitResponse_Quota{Id: "q", ExpirationSpecifier: &rlsv3.RateLimitResponse_Quota_ValidUntil{}},
		}, Response{Overall: CodeOK, Statuses: []Status{{Code: CodeOK, HasLimit: true, RequestsPerUnit: 5, Unit: 1, Remaining: 4}}}},
		{"negative reset is zero", &rlsv3.RateLimitResponse{Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{
			{DurationUntilReset: &durationpb.Duration{Seconds: -5}}}},
			Response{Statuses: []Status{{HasReset: true}}}},
		{"huge reset saturates", &rlsv3.RateLimitResponse{Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{
			{DurationUntilReset: &durationpb.Duration{Seconds: 1 << 62}}}},
			Response{Statuses: []Status{{HasReset: true, UntilReset: 1<<63 - 1}}}},
	}
	var r Response
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := proto.Marshal(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Decode(b); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !equal(&r, &tc.want) {
				t.Fatalf("got  %+v\nwant %+v", r, tc.want)
			}
		})
	}
}

func equal(a, b *Response) bool {
	if a.Overall != b.Overall || len(a.Statuses) != len(b.Statuses) {
		return false
	}
	for i := range a.Statuses {
		if a.Statuses[i] != b.Statuses[i] {
			return false
		}
	}
	return true
}

func TestDecodeGarbage(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"truncated tag", []byte{0x80}, ErrTruncated},
		{"truncated length", []byte{0x12}, ErrTruncated},
		{"length past end", []byte{0x12, 0x05, 0x08}, ErrTruncated},
		{"field zero", []byte{0x00, 0x01}, ErrMalformed},
		{"long varint", []byte{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, ErrMalformed},
		{"end group alone", []byte{0x0c}, ErrMalformed},
		{"wire type 7", []byte{0x0f}, ErrMalformed},
		{"unclosed group", []byte{0x1b, 0x08, 0x01}, ErrTruncated},
		{"group closed by another", []byte{0x1b, 0x24}, ErrMalformed},
		{"groups too deep", bytes.Repeat([]byte{0x1b}, 9), ErrTooDeep},
		{"bad status", []byte{0x12, 0x01, 0x80}, ErrTruncated},
		{"truncated fixed64", []byte{0x19, 1, 2}, ErrTruncated},
		{"truncated fixed32", []byte{0x1d, 1}, ErrTruncated},
		{"too many statuses", bytes.Repeat([]byte{0x12, 0x00}, MaxStatuses+1), ErrTooMany},
	}
	var r Response
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := r.Decode(tc.b); err != tc.want {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// A closed group and fixed-size unknown fields are skipped.
	if err := r.Decode([]byte{0x1b, 0x08, 0x01, 0x1c, 0x19, 1, 2, 3, 4, 5, 6, 7, 8, 0x1d, 1, 2, 3, 4, 0x08, 0x02}); err != nil || r.Overall != CodeOverLimit {
		t.Fatalf("skipping: %v %+v", err, r)
	}
}

// TestNoAllocations: once warm, encoding and decoding allocate nothing.
func TestNoAllocations(t *testing.T) {
	resp, _ := proto.Marshal(&rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT,
		Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{{Code: rlsv3.RateLimitResponse_OVER_LIMIT,
			DurationUntilReset: durationpb.New(time.Second)}}})
	var e Encoder
	var r Response
	value := []byte("10.1.2.3")
	run := func() {
		e.Reset("tokengate", 0)
		e.Begin()
		e.Entry("rule", value)
		e.Entry("remote_address", value)
		e.End(2)
		if err := r.Decode(resp); err != nil {
			t.Fatal(err)
		}
	}
	run()
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Fatalf("%v allocations per request", n)
	}
}

// FuzzDecode: no input panics, and wherever the real generated type reads
// the bytes too, both agree on every field this package decodes.
func FuzzDecode(f *testing.F) {
	for _, m := range []*rlsv3.RateLimitResponse{
		{OverallCode: rlsv3.RateLimitResponse_OK},
		{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT, Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{
			{Code: rlsv3.RateLimitResponse_OVER_LIMIT, CurrentLimit: &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: 10, Unit: 2},
				LimitRemaining: 3, DurationUntilReset: durationpb.New(1500 * time.Millisecond)}}},
		{RawBody: []byte("x"), ResponseHeadersToAdd: []*corev3.HeaderValue{{Key: "a", Value: "b"}}},
	} {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Add([]byte{0x1b, 0x08, 0x01, 0x1c})
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Response
		err := r.Decode(data)
		var pb rlsv3.RateLimitResponse
		perr := proto.Unmarshal(data, &pb)
		if perr != nil || err == ErrTooMany || err == ErrTooDeep {
			return
		}
		if err != nil {
			t.Fatalf("the real type reads %x, Decode fails: %v", data, err)
		}
		want := Response{Overall: code(uint64(uint32(pb.OverallCode)))}
		for _, s := range pb.Statuses {
			st := Status{Code: code(uint64(uint32(s.Code))), Remaining: s.LimitRemaining}
			if l := s.CurrentLimit; l != nil {
				st.HasLimit, st.RequestsPerUnit, st.Unit = true, l.RequestsPerUnit, Unit(uint32(l.Unit))
			}
			if d := s.DurationUntilReset; d != nil {
				st.HasReset = true
				if d.CheckValid() != nil {
					// Outside google.protobuf.Duration's range: any
					// value will do, as long as it is not negative.
					st.UntilReset = r.Statuses[len(want.Statuses)].UntilReset
					if st.UntilReset < 0 {
						t.Fatalf("%x: negative duration_until_reset %d", data, st.UntilReset)
					}
				} else {
					st.UntilReset = max(int64(d.AsDuration()), 0)
				}
			}
			want.Statuses = append(want.Statuses, st)
		}
		if !equal(&r, &want) {
			t.Fatalf("%x:\n got  %+v\nwant %+v", data, r, want)
		}
	})
}

// FuzzEncode: any domain, entries and hits encode to bytes the real type
// reads back as given (strings that are valid UTF-8, as proto3 requires).
func FuzzEncode(f *testing.F) {
	f.Add("tokengate", "rule", []byte("per-key"), uint64(1), uint32(0))
	f.Add("", "", []byte{}, uint64(0), uint32(1<<31))
	f.Fuzz(func(t *testing.T, domain, key string, value []byte, hits uint64, reqHits uint32) {
		if !utf8.ValidString(domain) || !utf8.ValidString(key) || !utf8.Valid(value) {
			return
		}
		var e Encoder
		e.Reset(domain, reqHits)
		e.Begin()
		e.Entry(key, value)
		e.Entry(key, value)
		e.End(hits)
		var got rlsv3.RateLimitRequest
		if err := proto.Unmarshal(e.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if got.Domain != domain || got.HitsAddend != reqHits || len(got.Descriptors) != 1 {
			t.Fatalf("got %v", &got)
		}
		d := got.Descriptors[0]
		if len(d.Entries) != 2 || d.Entries[1].Key != key || d.Entries[1].Value != string(value) ||
			(hits > 0) != (d.HitsAddend != nil) || hits > 0 && d.HitsAddend.Value != hits {
			t.Fatalf("descriptor %v", d)
		}
	})
}

func TestAppendGrpcService(t *testing.T) {
	for _, tc := range []struct{ cluster, authority string }{
		{"ratelimit", ""},
		{"outbound|8081||ratelimit.default.svc.cluster.local", "ratelimit.default.svc.cluster.local"},
	} {
		var got corev3.GrpcService
		if err := proto.Unmarshal(AppendGrpcService(nil, tc.cluster, tc.authority), &got); err != nil {
			t.Fatal(err)
		}
		want := &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
			EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: tc.cluster, Authority: tc.authority}}}
		if !proto.Equal(&got, want) {
			t.Errorf("got %v, want %v", &got, want)
		}
		if err := got.ValidateAll(); err != nil {
			t.Errorf("%v", err)
		}
	}
	if got := ServiceName + "/" + MethodName; got != "envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit" ||
		rlsv3.RateLimitService_ShouldRateLimit_FullMethodName != "/"+got {
		t.Errorf("method %q", got)
	}
}
