// Command demotimeline tells make demo's story (scripts/demo.sh) from what
// redwire and the receiver say themselves:
//
//	demotimeline status -redwire URL
//	    one line: where redwire's delivery stands (its /api/v1/status)
//	demotimeline wait -redwire URL [-timeout 60s]
//	    until redwire is back to normal with nothing on disk, telling each
//	    change of mode
//	demotimeline report -redwire URL -receiver URL -from MS -down-from MS -down-to MS -png FILE
//	    every scrape of the Redis target as the receiver holds it, one
//	    column a scrape with the outage marked, the same as a PNG, and the
//	    bottom line: samples taken (redwire's counters), delivered (the
//	    receiver's samples) and lost
//
// Times (MS) are unix milliseconds. report exits 1 if anything redwire
// took is not in the receiver; every command exits 1 on an error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: every exit path returns its code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: demotimeline status|wait|report [flags]")
		return 2
	}
	fs := flag.NewFlagSet("demotimeline "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	rwURL := fs.String("redwire", "", "redwire's web address, http://HOST:PORT")
	var err error
	switch args[0] {
	case "status":
		if err = fs.Parse(args[1:]); err == nil {
			err = status(ctx, client(*rwURL), stdout)
		}
	case "wait":
		timeout := fs.Duration("timeout", time.Minute, "give up after this long")
		if err = fs.Parse(args[1:]); err == nil {
			err = wait(ctx, client(*rwURL), *timeout, stdout)
		}
	case "report":
		var o reportOptions
		fs.StringVar(&o.receiverURL, "receiver", "", "the receiver's (Prometheus') address, http://HOST:PORT")
		from := fs.Int64("from", 0, "when redwire started, unix ms: the timeline starts there")
		downFrom := fs.Int64("down-from", 0, "when the receiver was stopped, unix ms")
		downTo := fs.Int64("down-to", 0, "when the receiver was back, unix ms")
		fs.StringVar(&o.png, "png", "", "write the timeline as a PNG here")
		fs.DurationVar(&o.interval, "interval", time.Second, "redwire's scrape interval")
		fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "how long to wait for the receiver to hold every scrape redwire counted")
		fs.IntVar(&o.width, "width", 72, "columns of timeline a row")
		if err = fs.Parse(args[1:]); err == nil {
			o.from = time.UnixMilli(*from)
			o.down = span{From: time.UnixMilli(*downFrom), To: time.UnixMilli(*downTo)}
			err = report(ctx, client(*rwURL), o, stdout)
		}
	default:
		fmt.Fprintf(stderr, "demotimeline: unknown command %q (want status, wait or report)\n", args[0])
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "demotimeline %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func client(base string) redwire {
	return redwire{base: base, http: &http.Client{Timeout: 5 * time.Second}}
}

// say prints a line of the story, stamped with the time of day as the
// rest of demo.sh's lines are.
func say(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func status(ctx context.Context, rw redwire, w io.Writer) error {
	eps, err := rw.status(ctx)
	if err != nil {
		return err
	}
	for _, e := range eps {
		say(w, "redwire says: %s", e.describe())
	}
	return nil
}

// wait polls redwire's status until every endpoint is normal with nothing
// on disk, telling each change of mode once.
func wait(ctx context.Context, rw redwire, timeout time.Duration, w io.Writer) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	told := map[string]string{} // endpoint: the mode last told
	for {
		eps, err := rw.status(ctx)
		if err != nil {
			return err
		}
		done := true
		for _, e := range eps {
			if m := e.mode(); told[e.Name] != m {
				told[e.Name] = m
				say(w, "redwire says: %s", e.describe())
			}
			done = done && e.mode() == modeNormal
		}
		if done {
			c, err := rw.counters(ctx)
			if err != nil {
				return err
			}
			say(w, "back to normal %.1f s after the receiver answered again; %s samples were replayed from disk (redwire_replay_samples_total)",
				time.Since(start).Seconds(), grouped(c.Replayed))
			return nil
		}
		if err := pause(ctx, 200*time.Millisecond); err != nil {
			return fmt.Errorf("redwire not back to normal after %s: %w", timeout, err)
		}
	}
}

type reportOptions struct {
	receiverURL string
	from        time.Time
	down        span
	png         string
	interval    time.Duration
	timeout     time.Duration
	width       int
}

// errLost is report's verdict when the receiver lacks what redwire took.
var errLost = errors.New("the receiver does not hold everything redwire took")

func report(ctx context.Context, rw redwire, o reportOptions, w io.Writer) error {
	c, err := rw.stableCounters(ctx)
	if err != nil {
		return err
	}
	recv := receiver{base: o.receiverURL, http: &http.Client{Timeout: 10 * time.Second}}

	// Wait until the receiver holds a scrape after the ones counted:
	// then everything before it that will ever arrive has arrived.
	deadline := time.Now().Add(o.timeout)
	var (
		h        held
		tl       timeline
		t        tally
		complete bool
	)
	for {
		if h, err = recv.held(ctx, c.Target, o.from, time.Now()); err != nil {
			return err
		}
		tl = newTimeline(h.Up, o.interval)
		if t, complete = count(tl, h.PerStamp, c.Scrapes, c.Taken); complete || time.Now().After(deadline) {
			break
		}
		if err := pause(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}

	say(w, "every scrape of Redis as the receiver holds it: its redis_up samples, with their own timestamps")
	fmt.Fprintln(w)
	tl.render(w, o.down, o.width)
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  taken:     redwire_samples_scraped_total{target=%q} on redwire's /metrics: %s samples in %s scrapes\n",
		c.Target, grouped(c.Taken), grouped(c.Scrapes))
	fmt.Fprintf(w, "  delivered: samples of {job=\"redis\",instance=%q} the receiver holds from those %s scrapes (%d series)\n",
		c.Target, grouped(c.Scrapes), h.Series)
	if t.Missing > 0 {
		fmt.Fprintf(w, "  missing:   %d of those scrapes have no sample in the receiver\n", t.Missing)
	}
	if !complete {
		fmt.Fprintf(w, "  the receiver still lacked scrapes redwire counted after %s\n", o.timeout)
	}
	if c.Dropped > 0 {
		fmt.Fprintf(w, "  redwire counted %s samples dropped (redwire_samples_dropped_total)\n", grouped(c.Dropped))
	}
	if o.png != "" {
		if err := drawChart(o.png, tl, h.Values, o.down, t); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "%d taken, %d delivered, %d lost\n", t.Taken, t.Delivered, t.Lost())
	if t.Lost() != 0 || t.Missing > 0 || !complete {
		return errLost
	}
	return nil
}

// pause waits d, or returns ctx's error.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// grouped is n with thousands separated: 47,246.
func grouped(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + grouped(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// size is a byte count in KiB or MiB.
func size(b int64) string {
	switch {
	case b < 1<<10:
		return fmt.Sprintf("%d B", b)
	case b < 1<<20:
		return fmt.Sprintf("%.0f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}
