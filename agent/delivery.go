package agent

// The delivery state machine: where each endpoint's delivery stands, and
// what moves it. The sender (sender.go) feeds it one event per answer
// from the receiver and does what the transition asks; this file decides,
// the sender acts.
//
//	normal   ── threshold failed tries in a row ──▶ degraded
//	degraded ── a batch from memory answered ──────▶ normal
//	degraded ── a batch from the store taken ──────▶ replay
//	normal   ── a batch from the store taken ──────▶ replay (a backlog from an earlier run)
//	replay   ── threshold failed tries in a row ──▶ degraded
//	replay   ── the store is empty ────────────────▶ normal
//
// Beside the mode, paused marks a receiver that refuses our credentials
// or URL (401, 403, 404): sending goes on as slow probes and the data is
// kept; the first answer of any other kind ends the pause. And
// noOutOfOrder marks a receiver that refused the out-of-order check of
// replay.order live_first: the endpoint replays as fifo from then on.

// mode is where an endpoint's delivery stands.
type mode int

const (
	// modeNormal: batches leave from memory as they fill.
	modeNormal mode = iota
	// modeDegraded: the receiver is down. The batch in flight and memory
	// went to disk, new scrapes go there too, scraping slows down, and
	// the oldest batch is retried as a probe.
	modeDegraded
	// modeReplay: the receiver is back and the backlog on disk drains
	// oldest-first; new scrapes queue behind it, so every series stays
	// in time order; with replay.order live_first they go before it, on
	// their own stream (livefirst.go).
	modeReplay
)

func (m mode) String() string {
	switch m {
	case modeNormal:
		return "normal"
	case modeDegraded:
		return "degraded"
	case modeReplay:
		return "replay"
	}
	return "unknown"
}

// delivery is an endpoint's delivery state: all a sender remembers from
// one batch to the next, handed over whole when a reload replaces the
// sender, so a down endpoint stays down until the new sender hears an
// answer.
type delivery struct {
	mode     mode
	failures int  // consecutive failed tries
	paused   bool // the receiver refuses our credentials or URL
	refusing bool // in a run of refused batches (logged once)
	// noOutOfOrder: the receiver refuses out-of-order samples, so
	// replay.order live_first falls back to fifo. It is the endpoint's,
	// kept across reloads like the rest.
	noOutOfOrder bool
}

// event is what the receiver's answer to a try meant.
type event int

const (
	// evSent: the receiver took a batch from memory.
	evSent event = iota
	// evSentStored: the receiver took a batch from the store.
	evSentStored
	// evRefused: the receiver refused (part of) a batch for good: 400,
	// 409, 415, other 4xx, or a single sample too large.
	evRefused
	// evFailed: a try failed in a way worth retrying: network error,
	// timeout, 5xx, 429.
	evFailed
	// evUnauthorized: 401, 403, 404: a credential or URL problem.
	evUnauthorized
	// evBacklogEmpty: the store holds nothing, the acks included.
	evBacklogEmpty
	// evOutOfOrderRefused: the receiver refused the out-of-order check
	// (replay.order live_first).
	evOutOfOrderRefused
)

// effect is something a transition asks the sender to do. A transition
// asks for any number of them; the sender does them in the order below.
type effect uint16

const (
	// warnFailing: the first failure of a run, logged once.
	warnFailing effect = 1 << iota
	// goDown: the endpoint is declared down. Spill the batch in flight
	// and memory to disk, slow scraping down, say so once.
	goDown
	// pauseOn: the receiver refuses our credentials or URL; say so once.
	pauseOn
	// pauseOff: the receiver answered otherwise: the pause is over.
	pauseOff
	// comeBack: the endpoint answers again: appends go to memory once the
	// backlog is gone, scraping speeds up, the backlog replays.
	comeBack
	// warnRefused: the first refusal of a run, logged once.
	warnRefused
	// replayDone: the backlog is drained; the file can shrink.
	replayDone
	// fallBackFIFO: fresh scrapes go behind the backlog again, as with
	// replay.order fifo; say so once, naming the setting.
	fallBackFIFO
)

// on returns the state after ev and what the sender must do about it.
// threshold is degraded.failure_threshold: that many consecutive failed
// tries declare the endpoint down.
func (d delivery) on(ev event, threshold int) (delivery, effect) {
	var fx effect
	switch ev {
	case evFailed, evUnauthorized:
		d.failures++
		switch {
		case d.mode != modeDegraded && d.failures >= threshold:
			d.mode = modeDegraded
			fx |= goDown
		case d.mode != modeDegraded && d.failures == 1:
			fx |= warnFailing
		}
		if ev == evUnauthorized && !d.paused {
			d.paused = true
			fx |= pauseOn
		}
	case evSent, evSentStored, evRefused:
		// The receiver took or judged a batch: it is up.
		d.failures = 0
		if d.paused {
			d.paused = false
			fx |= pauseOff
		}
		if d.mode == modeDegraded {
			d.mode = modeNormal
			fx |= comeBack
		}
		switch ev {
		case evRefused:
			if !d.refusing {
				d.refusing = true
				fx |= warnRefused
			}
		case evSentStored:
			d.refusing = false
			d.mode = modeReplay
		default:
			d.refusing = false
		}
	case evBacklogEmpty:
		if d.mode == modeReplay {
			d.mode = modeNormal
			fx |= replayDone
		}
	case evOutOfOrderRefused:
		// The check was answered: the receiver is up, but a refusal of a
		// probe says nothing about the batches, so failures stand.
		if !d.noOutOfOrder {
			d.noOutOfOrder = true
			fx |= fallBackFIFO
		}
	}
	return d, fx
}
