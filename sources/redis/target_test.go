package redis

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	goredis "github.com/redis/go-redis/v9"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sample"
)

// value returns the value of the only sample of family in sc.
func value(t *testing.T, sc *sample.Scrape, family string) float64 {
	t.Helper()
	for _, s := range sc.Samples {
		if s.Labels.Get(model.MetricNameLabel) == family {
			return s.V
		}
	}
	t.Fatalf("no %s in the scrape", family)
	return 0
}

// TestSoftFailure: a killed Redis keeps redis_up 1 for threshold-1 failed
// scrapes and turns it 0 on the threshold-th; the raw success is 0 at
// once; the error names the target and the phase.
func TestSoftFailure(t *testing.T) {
	r := harness.StartRedis(t)
	tg, err := NewTarget(TargetConfig{Addr: r.URL(), SoftFailThreshold: 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	ctx := context.Background()
	if !tg.LastSuccess().IsZero() || tg.LastError() != nil {
		t.Errorf("before any scrape: LastSuccess %v, LastError %v; want zero, nil", tg.LastSuccess(), tg.LastError())
	}
	okAt := time.Now()
	sc, err := tg.Scrape(ctx, okAt)
	if err != nil || value(t, sc, "redis_up") != 1 {
		t.Fatalf("healthy scrape: up %v, err %v", value(t, sc, "redis_up"), err)
	}
	if rtt := value(t, sc, "redis_info_round_trip_seconds"); rtt <= 0 {
		t.Errorf("redis_info_round_trip_seconds = %v", rtt)
	}

	r.Kill()
	for i, wantUp := range []float64{1, 1, 0, 0} {
		sc, err := tg.Scrape(ctx, time.Now())
		var se *ScrapeError
		if !errors.As(err, &se) || se.Phase != PhaseConnect || se.Target != r.Addr() {
			t.Fatalf("failure %d: err = %v; want a connect-phase ScrapeError naming %s", i+1, err, r.Addr())
		}
		if got := value(t, sc, "redis_up"); got != wantUp {
			t.Errorf("failure %d: redis_up = %v, want %v", i+1, got, wantUp)
		}
		if got := value(t, sc, "redwire_target_scrape_success"); got != 0 {
			t.Errorf("failure %d: redwire_target_scrape_success = %v, want 0", i+1, got)
		}
		if got := tg.ConsecutiveFailures(); got != i+1 {
			t.Errorf("failure %d: ConsecutiveFailures = %d", i+1, got)
		}
		if got := tg.LastError(); got == nil || got.Error() != err.Error() {
			t.Errorf("failure %d: LastError = %v, want %v", i+1, got, err)
		}
		if got := tg.LastSuccess(); !got.Equal(okAt) {
			t.Errorf("failure %d: LastSuccess = %v, want the healthy scrape's stamp %v", i+1, got, okAt)
		}
	}

	r.Start()
	var backAt time.Time
	harness.WaitFor(t, 30*time.Second, "redis_up back to 1", func() (bool, error) {
		backAt = time.Now()
		sc, err := tg.Scrape(ctx, backAt)
		return err == nil && value(t, sc, "redis_up") == 1 && tg.ConsecutiveFailures() == 0, err
	})
	if tg.LastError() != nil || !tg.LastSuccess().Equal(backAt) {
		t.Errorf("back up: LastError %v, LastSuccess %v; want nil, %v", tg.LastError(), tg.LastSuccess(), backAt)
	}
}

// TestNeverUpIsDownAtOnce: a target that never answered has nothing to
// ride over; threshold 1 is redis_exporter's immediate semantics.
func TestNeverUpIsDownAtOnce(t *testing.T) {
	for _, threshold := range []int{1, 3} {
		tg, err := NewTarget(TargetConfig{Addr: "redis://127.0.0.1:1", SoftFailThreshold: threshold}, nil)
		if err != nil {
			t.Fatal(err)
		}
		sc, err := tg.Scrape(context.Background(), time.Now())
		if err == nil || value(t, sc, "redis_up") != 0 {
			t.Errorf("threshold %d: never-up target: redis_up %v, err %v", threshold, value(t, sc, "redis_up"), err)
		}
		tg.Close()
	}
}

func TestPhaseOfAuth(t *testing.T) {
	const right, wrong = "canary-right-pw", "canary-wrong-pw"
	r := harness.StartRedis(t, harness.WithPassword(right))
	tg, err := NewTarget(TargetConfig{Addr: r.URL(), Password: wrong}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	_, err = tg.Scrape(context.Background(), time.Now())
	var se *ScrapeError
	if !errors.As(err, &se) || se.Phase != PhaseAuth {
		t.Fatalf("wrong password: err = %v, want phase %s", err, PhaseAuth)
	}
	if msg := se.Error(); strings.Contains(msg, right) || strings.Contains(msg, wrong) {
		t.Errorf("error text %q leaks a password", se.Error())
	}
}

// TestScrapeTimeoutIsTheOnlyDeadline: a Redis busy for 8 s is
// scraped within a 20 s deadline (its scrape starts a moment into the
// sleep, so it waits more than 3 s); go-redis's default 3 s read timeout
// must not cut it short.
func TestScrapeTimeoutIsTheOnlyDeadline(t *testing.T) {
	r := harness.StartRedis(t, harness.WithArgs("--enable-debug-command", "yes"))
	target, err := NewTarget(TargetConfig{Addr: r.URL()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	slept := make(chan error, 1)
	sleeper := goredis.NewClient(&goredis.Options{Addr: r.Addr(), ReadTimeout: -1, MaxRetries: -1})
	defer sleeper.Close()
	go func() { slept <- sleeper.Do(context.Background(), "DEBUG", "SLEEP", "8").Err() }()
	// The scrape must queue behind the sleep: wait until Redis is in it.
	harness.WaitFor(t, 10*time.Second, "DEBUG SLEEP under way", func() (bool, error) {
		c := goredis.NewClient(&goredis.Options{Addr: r.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		return c.Ping(ctx).Err() != nil, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := target.Scrape(ctx, time.Now()); err != nil {
		t.Errorf("scrape of a Redis busy for 8 s, with a 20 s deadline: %v", err)
	}
	if err := <-slept; err != nil {
		t.Fatal(err)
	}
}
