package remotewrite

import (
	"context"
	"reflect"
	"testing"
	"time"
)

// TestPolicyWindowParksWhatTheReceiverWouldRefuse: with the receiver's
// window declared, the old part of a batch is answered refused for its
// age without a request, and only the rest is sent; runs stay in batch
// order and the metadata goes with the first.
func TestPolicyWindowParksWhatTheReceiverWouldRefuse(t *testing.T) {
	now := time.Now()
	old, young := now.Add(-3*time.Hour).UnixMilli(), now.Add(-time.Minute).UnixMilli()
	for _, tc := range []struct {
		name          string
		times         []int64
		sent          []int
		taken, refuse []int
	}{
		{"all young", []int64{young, young, young}, []int{3}, []int{3}, nil},
		{"all old", []int64{old, old, old}, nil, nil, []int{3}},
		{"old then young", []int64{old, old, young, young, young}, []int{3}, []int{3}, []int{2}},
		{"young, old, young", []int64{young, old, young}, []int{1, 1}, []int{1, 1}, []int{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := testBatch(len(tc.times))
			for i, ts := range tc.times {
				b.Samples[i].T = ts
			}
			s, r := &fakeSender{}, &recorder{}
			p := testPolicy
			p.Window = 2 * time.Hour
			if err := p.Deliver(context.Background(), s, &Encoder{}, b, nil, r); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(s.sent, tc.sent) || !reflect.DeepEqual(r.taken, tc.taken) || !reflect.DeepEqual(r.refused, tc.refuse) {
				t.Errorf("sent %v, taken %v, refused %v; want %v, %v, %v", s.sent, r.taken, r.refused, tc.sent, tc.taken, tc.refuse)
			}
			for _, err := range r.refusedErrs {
				if CauseOf(err) != CauseAge {
					t.Errorf("refused with %v (cause %v), want cause age", err, CauseOf(err))
				}
			}
			if r.metadataParts != 1 {
				t.Errorf("%d parts carried the metadata, want 1", r.metadataParts)
			}
		})
	}
}
