package agent

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/redwire/redwire/internal/pause"
	"github.com/redwire/redwire/remotewrite"
)

// The replay's pace. A backlog batch goes out no sooner than storeDue:
//
//   - once the endpoint answers again, storeDue is a random point within
//     replay.start_jitter, so that a fleet of agents whose link comes
//     back does not replay into one receiver in the same second (the
//     batch that found the receiver back has gone already);
//   - after each batch taken, the AIMD controller (remotewrite/aimd.go)
//     says how long until the next: under replay.max_samples_per_second,
//     halved on every 429, 5xx or timeout, honouring Retry-After, and
//     growing back while the receiver keeps up.
//
// With replay.order fifo the sender waits it out; with live_first it
// sends fresh scrapes meanwhile (livefirst.go).

// replayStarts restarts the pace for a replay after an outage: a fresh
// controller, and a jittered start.
func (s *sender) replayStarts() {
	s.aimd = remotewrite.NewAIMD(s.replayRate, s.replayBatch)
	s.storeDue = time.Time{}
	if s.startJitter > 0 {
		s.storeDue = time.Now().Add(rand.N(s.startJitter))
	}
}

// paceReplay waits, or with live_first marks the wait, that n samples
// just taken from the backlog owe before the next batch of it.
func (s *sender) paceReplay(ctx context.Context, n int, took time.Duration) {
	s.aimd.Taken(n, took)
	now := time.Now()
	d := s.aimd.Delay(now, n)
	if s.liveFirst {
		s.storeDue = later(s.storeDue, now.Add(d))
		return
	}
	if d > 0 {
		s.pauseFor(ctx, d)
	}
}

// waitStoreDue waits until a backlog batch may go, and reports whether
// ctx is still on.
func (s *sender) waitStoreDue(ctx context.Context) bool {
	if d := time.Until(s.storeDue); d > 0 {
		return s.pauseFor(ctx, d)
	}
	return ctx.Err() == nil
}

func (s *sender) pauseFor(ctx context.Context, d time.Duration) bool {
	if s.pace != nil {
		return s.pace(ctx, d)
	}
	return pause.For(ctx, d)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
