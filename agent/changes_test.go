package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestChangeLogKeepsTheNewestNewestFirst: past maxChanges the oldest go,
// and the list reads newest first; a nil log records nothing.
func TestChangeLogKeepsTheNewestNewestFirst(t *testing.T) {
	var c changeLog
	if got := c.recent(); len(got) != 0 {
		t.Fatalf("empty log lists %v", got)
	}
	const added = maxChanges + 7
	for i := range added {
		c.add(stateChange{Endpoint: fmt.Sprint(i)})
	}
	got := c.recent()
	if len(got) != maxChanges {
		t.Fatalf("%d changes kept, want %d", len(got), maxChanges)
	}
	for i, ch := range got {
		if want := fmt.Sprint(added - 1 - i); ch.Endpoint != want {
			t.Fatalf("change %d is #%s, want #%s (newest first, the oldest forgotten)", i, ch.Endpoint, want)
		}
	}

	var none *changeLog
	none.add(stateChange{Endpoint: "x"})
	if got := none.recent(); got == nil || len(got) != 0 {
		t.Errorf("nil log lists %#v, want an empty list", got)
	}
}

// TestSenderReportsItsStateChanges: every move of the delivery state
// machine, through the real sender, lands in the change log once, with
// the answer that caused it; the published state is the sender's.
func TestSenderReportsItsStateChanges(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answers []int
		want    [][3]string // from, to, a part of the error ("": none); oldest first
	}{
		{name: "down, replayed, normal", answers: []int{500, 500, 500, 204}, want: [][3]string{
			{"normal", "degraded", "HTTP 500"}, {"degraded", "replay", ""}, {"replay", "normal", ""}}},
		{name: "paused, then down while paused", answers: []int{403, 403, 403, stop}, want: [][3]string{
			{"normal", "normal, paused", "HTTP 403"}, {"normal, paused", "degraded, paused", "HTTP 403"}}},
		{name: "a 2xx moves nothing", answers: []int{204}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rig := newSenderRig(t, tc.answers)
			rig.s.changes = &changeLog{}
			rig.buf.Append(rigBatch(8))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			rig.fake.done = func() { cancel() }
			rig.s.run(ctx)

			got := rig.s.changes.recent()
			slices.Reverse(got)
			if len(got) != len(tc.want) {
				t.Fatalf("changes %+v, want %q", got, tc.want)
			}
			for i, ch := range got {
				w := tc.want[i]
				if ch.Endpoint != rig.s.name || ch.At.IsZero() || ch.From != w[0] || ch.To != w[1] ||
					(w[2] == "") != (ch.Error == "") || !strings.Contains(ch.Error, w[2]) {
					t.Errorf("change %d: %+v, want %q → %q for endpoint %q, error with %q", i, ch, w[0], w[1], rig.s.name, w[2])
				}
			}
			if shown := rig.s.shownState(); shown.mode != rig.s.state.mode || shown.paused != rig.s.state.paused {
				t.Errorf("published %+v, the sender is in %+v", shown, rig.s.state)
			}
		})
	}
}
