package main

import (
	"strings"
	"testing"
	"time"
)

// t0 is a whole second, so that the drift below crosses second boundaries.
var t0 = time.Date(2026, 5, 1, 12, 0, 0, 990_000_000, time.Local)

// stamps are n scrapes from t0, each interval+drift after the one before
// (redwire paces a scrape from the start of the last), skipping those in
// skip.
func stamps(n int, drift time.Duration, skip ...int) []time.Time {
	var out []time.Time
	t := t0
	for i := range n {
		if !contains(skip, i) {
			out = append(out, t)
		}
		t = t.Add(time.Second + drift)
	}
	return out
}

func contains(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// perStamp gives every scrape the same number of samples.
func perStamp(ts []time.Time, samples int) map[int64]int {
	m := map[int64]int{}
	for _, t := range ts {
		m[t.UnixMilli()] = samples
	}
	return m
}

func TestTimelineDriftingStampsLeaveNoGap(t *testing.T) {
	// 40 scrapes 1.004 s apart cross a second boundary (t0 is at .990):
	// bucketing by wall-clock second would show a missing second here.
	tl := newTimeline(stamps(40, 4*time.Millisecond), time.Second)
	if len(tl.Slots) != 40 {
		t.Fatalf("slots: got %d, want 40", len(tl.Slots))
	}
	for i, s := range tl.Slots {
		if !s.Present {
			t.Errorf("slot %d missing", i)
		}
	}
}

func TestTimelineGapLeavesMissingSlots(t *testing.T) {
	tl := newTimeline(stamps(10, 0, 4, 5), time.Second)
	if len(tl.Slots) != 10 {
		t.Fatalf("slots: got %d, want 10", len(tl.Slots))
	}
	for i, s := range tl.Slots {
		if want := i != 4 && i != 5; s.Present != want {
			t.Errorf("slot %d: present %v, want %v", i, s.Present, want)
		}
	}
	if got, want := tl.Slots[4].T, t0.Add(4*time.Second); !got.Equal(want) {
		t.Errorf("missing slot 4 due at %v, want %v", got, want)
	}
}

func TestCountNothingLostWhenTheReceiverHoldsALaterScrape(t *testing.T) {
	ts := stamps(12, 3*time.Millisecond)
	tl := newTimeline(ts, time.Second)
	// redwire counted 10 scrapes of 300 samples; the receiver already
	// holds two more, which must not count as delivered.
	got, complete := count(tl, perStamp(ts, 300), 10, 3000)
	if !complete {
		t.Fatal("not complete with two later scrapes in the receiver")
	}
	want := tally{Taken: 3000, Scrapes: 10, Delivered: 3000}
	if got != want || got.Lost() != 0 {
		t.Errorf("got %+v (lost %d), want %+v, 0 lost", got, got.Lost(), want)
	}
}

func TestCountAMissingScrapeIsLostNotShifted(t *testing.T) {
	ts := stamps(12, 0, 6)
	tl := newTimeline(ts, time.Second)
	got, complete := count(tl, perStamp(ts, 300), 10, 3000)
	if !complete {
		t.Fatal("not complete")
	}
	// Scrape 6 is gone: the cut stays before scrape 10 instead of
	// sliding one scrape later and hiding the loss.
	want := tally{Taken: 3000, Scrapes: 10, Delivered: 2700, Missing: 1}
	if got != want || got.Lost() != 300 {
		t.Errorf("got %+v (lost %d), want %+v, 300 lost", got, got.Lost(), want)
	}
}

func TestCountPartlyDeliveredScrapeIsLost(t *testing.T) {
	ts := stamps(11, 0)
	tl := newTimeline(ts, time.Second)
	held := perStamp(ts, 300)
	held[ts[3].UnixMilli()] = 290 // a batch of 10 never arrived
	got, _ := count(tl, held, 10, 3000)
	if got.Lost() != 10 || got.Missing != 0 {
		t.Errorf("got %+v (lost %d), want 10 lost and no scrape missing", got, got.Lost())
	}
}

func TestCountIncompleteUntilALaterScrapeArrives(t *testing.T) {
	ts := stamps(10, 0)
	tl := newTimeline(ts, time.Second)
	// The receiver holds the 10 scrapes redwire counted but nothing after
	// them: the last one may still be on its way.
	if _, complete := count(tl, perStamp(ts, 300), 10, 3000); complete {
		t.Error("complete without a later scrape in the receiver")
	}
	got, complete := count(tl, perStamp(ts, 300), 12, 3600)
	if complete || got.Missing != 2 || got.Lost() != 600 {
		t.Errorf("12 counted, 10 held: got %+v, complete %v; want 2 missing, 600 lost, incomplete", got, complete)
	}
}

func TestRenderMarksTheOutage(t *testing.T) {
	ts := stamps(30, 0, 20)
	tl := newTimeline(ts, time.Second)
	down := span{From: t0.Add(5 * time.Second), To: t0.Add(25 * time.Second)}
	var b strings.Builder
	tl.render(&b, down, 72)
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3:\n%s", len(lines), b.String())
	}
	cells := []rune(strings.Fields(lines[0])[1])
	if len(cells) != 30 {
		t.Fatalf("got %d cells, want 30: %q", len(cells), lines[0])
	}
	for i, c := range cells {
		want := '█'
		if i == 20 {
			want = '·'
		}
		if c != want {
			t.Errorf("cell %d: got %q, want %q", i, c, want)
		}
	}
	// The bracket sits under cells 5 to 24, the outage's slots.
	col := len([]rune("  12:00:00 "))
	marks := []rune(lines[1])
	if got := string(marks[col+5]); got != "└" {
		t.Errorf("bracket opens with %q under cell 5: %q", got, lines[1])
	}
	if got := string(marks[col+24]); got != "┘" {
		t.Errorf("bracket closes with %q under cell 24: %q", got, lines[1])
	}
	if !strings.Contains(lines[1], "down 20 s") {
		t.Errorf("no label in %q", lines[1])
	}
}

func TestRenderWrapsLongTimelines(t *testing.T) {
	tl := newTimeline(stamps(100, 0), time.Second)
	var b strings.Builder
	tl.render(&b, span{From: t0.Add(50 * time.Second), To: t0.Add(70 * time.Second)}, 60)
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	// Row 1 (60 cells), its marks, row 2 (40 cells), its marks, legend.
	if len(lines) != 5 {
		t.Fatalf("got %d lines, want 5:\n%s", len(lines), b.String())
	}
	if n := strings.Count(lines[0], cellPresent); n != 60 {
		t.Errorf("row 1: %d cells, want 60", n)
	}
	if n := strings.Count(lines[2], cellPresent); n != 40 {
		t.Errorf("row 2: %d cells, want 40", n)
	}
	if !strings.HasPrefix(lines[2], "  12:01:00 ") {
		t.Errorf("row 2 starts %q, want the time of its first scrape", lines[2])
	}
}

func TestBracketLabelInsideOrAfter(t *testing.T) {
	for _, c := range []struct {
		n    int
		want string
	}{
		{24, "└─ receiver down 20 s ─┘"},
		{22, "└ receiver down 20 s ┘"},
		{15, "└─ down 20 s ─┘"},
		{13, "└ down 20 s ┘"},
		{12, "└──────────┘ receiver down 20 s"},
		{1, "^ receiver down 20 s"},
	} {
		if got := bracket(c.n, "receiver down 20 s", "down 20 s"); got != c.want {
			t.Errorf("bracket(%d): got %q, want %q", c.n, got, c.want)
		}
	}
}
