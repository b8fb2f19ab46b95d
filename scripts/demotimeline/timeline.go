package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// span is a stretch of wall-clock time, [From, To).
type span struct{ From, To time.Time }

func (s span) contains(t time.Time) bool { return !t.Before(s.From) && t.Before(s.To) }

// slot is one scrape interval of the target: the scrape the receiver
// holds for it, or a gap where one was due.
type slot struct {
	T       time.Time // the scrape's timestamp; for a missing one, when it was due
	Present bool
}

// timeline is the target's scrapes as the receiver holds them, one slot
// per scrape interval from the first. Slots are counted from the gaps
// between scrapes, not from wall-clock seconds: redwire paces each scrape
// from the start of the one before, so stamps drift a few milliseconds a
// scrape and a fixed one-second grid would show false gaps and doubles.
type timeline struct {
	Interval time.Duration
	Slots    []slot // Slots[0] is the first scrape; the last slot is always present
}

// newTimeline places the scrape timestamps (sorted, distinct) on slots:
// a gap of n intervals (rounded) between two scrapes leaves n-1 missing
// slots between them.
func newTimeline(stamps []time.Time, interval time.Duration) timeline {
	tl := timeline{Interval: interval}
	for i, t := range stamps {
		if i > 0 {
			prev := stamps[i-1]
			steps := max(1, int(math.Round(float64(t.Sub(prev))/float64(interval))))
			for k := 1; k < steps; k++ {
				tl.Slots = append(tl.Slots, slot{T: prev.Add(time.Duration(k) * interval)})
			}
		}
		tl.Slots = append(tl.Slots, slot{T: t, Present: true})
	}
	return tl
}

// tally is the demo's bottom line: what redwire took against what the
// receiver holds of it.
type tally struct {
	Taken     int64 // samples redwire took (its redwire_samples_scraped_total)
	Scrapes   int64 // scrapes they came in (its redwire_target_scrapes_total)
	Delivered int64 // samples of those scrapes the receiver holds
	Missing   int   // scrapes of those the receiver has no sample of
}

// Lost is what was taken and is not in the receiver.
func (t tally) Lost() int64 { return t.Taken - t.Delivered }

// count sets redwire's counters, taken samples in scrapes scrapes, against
// the receiver's samples of the target (how many carry each timestamp, in
// ms). The first scrapes slots are the ones redwire counted; samples
// stamped before the next slot count as delivered. complete reports
// whether the receiver holds a scrape after those: redwire sends oldest
// first, so then every sample of the counted ones that will ever arrive
// has arrived, and a shortfall is a loss rather than a delay.
func count(tl timeline, perStamp map[int64]int, scrapes, taken int64) (t tally, complete bool) {
	t = tally{Taken: taken, Scrapes: scrapes}
	cutoff := int64(math.MaxInt64)
	if complete = int64(len(tl.Slots)) > scrapes; complete {
		cutoff = tl.Slots[scrapes].T.Add(-tl.Interval / 2).UnixMilli()
	}
	for ts, n := range perStamp {
		if ts < cutoff {
			t.Delivered += int64(n)
		}
	}
	for i := int64(0); i < scrapes; i++ {
		if i >= int64(len(tl.Slots)) || !tl.Slots[i].Present {
			t.Missing++
		}
	}
	return t, complete
}

const (
	cellPresent = "█"
	cellMissing = "·"
)

// render prints the timeline, one column a slot, rows of at most width
// columns, each with a line under it that marks the slots of down.
func (tl timeline) render(w io.Writer, down span, width int) {
	if len(tl.Slots) == 0 {
		fmt.Fprintln(w, "  (the receiver holds no scrape)")
		return
	}
	clock := func(t time.Time) string { return t.Local().Format("15:04:05") }
	indent := strings.Repeat(" ", len("  15:04:05 "))
	for from := 0; from < len(tl.Slots); from += width {
		row := tl.Slots[from:min(from+width, len(tl.Slots))]
		var cells, marks strings.Builder
		run := 0 // length of the current run of down slots
		flush := func() {
			d := seconds(down.To.Sub(down.From))
			marks.WriteString(bracket(run, "receiver down "+d, "down "+d))
			run = 0
		}
		for _, s := range row {
			if s.Present {
				cells.WriteString(cellPresent)
			} else {
				cells.WriteString(cellMissing)
			}
			if down.contains(s.T) {
				run++
				continue
			}
			if run > 0 {
				flush()
			}
			marks.WriteString(" ")
		}
		if run > 0 {
			flush()
		}
		fmt.Fprintf(w, "  %s %s %s\n", clock(row[0].T), cells.String(), clock(row[len(row)-1].T))
		if m := strings.TrimRight(marks.String(), " "); m != "" {
			fmt.Fprintf(w, "%s%s\n", indent, m)
		}
	}
	fmt.Fprintf(w, "%s%s a scrape in the receiver   %s none\n", indent, cellPresent, cellMissing)
}

// bracket is n columns marking a run of slots: "└── label ──┘" with the
// first label that fits inside, or the bare bracket and the first label
// after it (wider than n, so only at the end of a line).
func bracket(n int, labels ...string) string {
	switch {
	case n == 1:
		return "^ " + labels[0]
	case n < 1:
		return ""
	}
	inner := n - 2
	for _, label := range labels {
		if l := utf8.RuneCountInString(label) + 2; l <= inner {
			left := (inner - l) / 2
			return "└" + strings.Repeat("─", left) + " " + label + " " + strings.Repeat("─", inner-l-left) + "┘"
		}
	}
	return "└" + strings.Repeat("─", inner) + "┘ " + labels[0]
}

// seconds is d rounded to whole seconds, as "20 s".
func seconds(d time.Duration) string { return fmt.Sprintf("%d s", d.Round(time.Second)/time.Second) }
