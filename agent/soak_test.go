package agent

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/harness"
)

// TestSoak runs the agent for REDWIRE_SOAK (a duration; `make soak` sets
// 30m) at 1 s against real servers while a chaos schedule stops and
// starts the receiver, makes a proxy in front of it answer 500, 429 and
// time out, restarts a Redis, SIGKILLs and restarts the agent, and fails a
// Sentinel master over. At the end, with everything healthy again, it
// checks the accounting: every scrape the agent counted is in the receiver
// (redis_up, one per scrape), every sample taken is delivered or counted
// as dropped with a reason, the receiver rejected nothing, and the last
// agent process, spared the kills, kept its goroutines, open files and
// RSS flat. REDWIRE_SOAK_SEED replays a schedule.
func TestSoak(t *testing.T) {
	env := os.Getenv("REDWIRE_SOAK")
	if env == "" {
		t.Skip("the chaos soak runs with REDWIRE_SOAK=<duration> (make soak)")
	}
	d, err := time.ParseDuration(env)
	if err != nil || d < 2*time.Minute {
		t.Fatalf("REDWIRE_SOAK=%q: want a duration of at least 2m", env)
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("REDWIRE_SOAK_SEED"); s != "" {
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("REDWIRE_SOAK_SEED=%q: %v", s, err)
		}
	}
	t.Logf("soak of %v, REDWIRE_SOAK_SEED=%d", d, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	s := newSoak(t, buildRedwire(t))
	begin := time.Now()
	end, calm, failover := begin.Add(d), begin.Add(d*6/10), begin.Add(d/2)
	failedOver := false
	s.launch()
	// Rounds of every fault in a random order, so a short soak sees each
	// kind too.
	var round []int
	for time.Now().Before(end) {
		s.pause(end, 5, 30, rng)
		if !failedOver && time.Now().After(failover) {
			failedOver = true
			s.failover()
			continue
		}
		if len(round) == 0 {
			round = rng.Perm(4)
		}
		fault := round[0]
		round = round[1:]
		switch fault {
		case 0:
			s.receiverOutage(end, rng)
		case 1:
			s.receiverFaults(end, rng)
		case 2:
			s.redisRestart(end, rng)
		case 3:
			if time.Now().Before(calm) {
				s.agentKill(rng)
			}
		}
	}
	s.settle()
	s.check()
	// A soak that never injected a fault proved nothing about it.
	for kind, n := range s.faults {
		if n == 0 {
			t.Errorf("the schedule never got to %s: run longer", kind)
		}
	}
}

// soak is the rig of TestSoak and its ledger.
type soak struct {
	t        *testing.T
	bin      string
	cfgFile  string
	addr     string
	prom     *harness.Prometheus
	proxy    *harness.Proxy
	flaky    *harness.Redis
	group    *harness.SentinelGroup
	begin    time.Time
	agent    *agentProcess
	stopRead chan struct{}
	reading  sync.WaitGroup

	mu sync.Mutex
	// Scrapes and samples counted by processes that ended, by target,
	// and by the running one as last read.
	scrapes, samples       map[string]float64
	curScrapes, curSamples map[string]float64
	dropped, curDropped    map[string]float64 // by reason
	// slack is how many scrapes of a target may have happened after the
	// last read of a counter: one per process end (read, then signal) and
	// two per target that vanished between two reads (discovery removed
	// it; its counters went with it).
	slack     map[string]int
	resources []soakResources // of the running process
	events    []string
	faults    map[string]int // injected, by kind
}

type soakResources struct {
	at                    time.Time
	goroutines, fds, rssB float64
}

func newSoak(t *testing.T, bin string) *soak {
	s := &soak{
		t: t, bin: bin, begin: time.Now(),
		scrapes: map[string]float64{}, samples: map[string]float64{}, dropped: map[string]float64{},
		slack:  map[string]int{},
		faults: map[string]int{"receiver outage": 0, "receiver faults": 0, "redis restart": 0, "agent kill": 0, "failover": 0},
	}
	s.prom = harness.StartPrometheus(t)
	s.proxy = harness.StartProxy(t, s.prom.URL())
	steady := harness.StartRedis(t)
	s.flaky = harness.StartRedis(t)
	s.group = harness.StartSentinelGroup(t, "soak", 2, 3)
	var sentinels []string
	for _, r := range s.group.Sentinels {
		sentinels = append(sentinels, r.Addr())
	}
	s.addr = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	dir := t.TempDir()
	s.cfgFile = filepath.Join(dir, "redwire.yml")
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 900ms
targets:
  - addr: %s
  - addr: %s
sentinels:
  - master_name: soak
    addrs: [%s]
    monitor: [master, replicas]
remote_write:
  - url: %s/api/v1/write
    remote_timeout: 2s
    queue_config: {batch_send_deadline: 100ms, min_backoff: 50ms, max_backoff: 1s}
degraded:
  interval: 2s
buffer:
  path: %s
  mode: %s
  crash_journal: %s
self_metrics:
  enabled: false
web:
  listen_address: %s
`, steady.URL(), s.flaky.URL(), strings.Join(sentinels, ", "), s.proxy.URL(), filepath.Join(dir, "buffer"),
		soakMode(), filepath.Join(dir, "journal"), s.addr)
	if err := os.WriteFile(s.cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		t.Logf("chaos schedule:\n%s", strings.Join(s.events, "\n"))
	})
	return s
}

// soakMode is the buffer.mode the soak runs in: the default (spill, with
// its crash journal, which the SIGKILLs exercise), or REDWIRE_SOAK_MODE.
func soakMode() string {
	if m := os.Getenv("REDWIRE_SOAK_MODE"); m != "" {
		return m
	}
	return buffer.ModeSpill
}

func (s *soak) logf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, fmt.Sprintf("%6.0fs ", time.Since(s.begin).Seconds())+fmt.Sprintf(format, args...))
}

// pause waits between lo and hi seconds, never past end. The schedule is
// the point here, not a wait for a condition.
func (s *soak) pause(end time.Time, lo, hi int, rng *rand.Rand) {
	d := time.Duration(lo+rng.IntN(hi-lo+1)) * time.Second
	time.Sleep(min(d, max(0, time.Until(end))))
}

// launch starts an agent process on the buffer and reads its counters
// every second until it ends.
func (s *soak) launch() {
	s.agent = launchProcess(s.t, s.bin, s.addr, "--config.file="+s.cfgFile)
	s.logf("agent started (pid %d)", s.agent.cmd.Process.Pid)
	s.mu.Lock()
	s.curScrapes, s.curSamples, s.curDropped, s.resources = map[string]float64{}, map[string]float64{}, map[string]float64{}, nil
	s.mu.Unlock()
	s.stopRead = make(chan struct{})
	s.reading.Add(1)
	go func() {
		defer s.reading.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-s.stopRead:
				return
			case <-tick.C:
				s.read()
			}
		}
	}()
}

// read takes the running process's counters; false if it did not answer.
func (s *soak) read() bool {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + s.addr + "/metrics")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return false
	}
	by := func(name, label string) map[string]float64 {
		out := map[string]float64{}
		if mf := mfs[name]; mf != nil {
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					if lp.GetName() == label {
						out[lp.GetValue()] += m.GetCounter().GetValue() + m.GetGauge().GetValue()
					}
				}
			}
		}
		return out
	}
	one := func(name string) float64 {
		if mf := mfs[name]; mf != nil && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	scrapes := by("redwire_target_scrapes_total", "target")
	for target := range s.curScrapes {
		if _, ok := scrapes[target]; !ok {
			s.slack[target] += 2
			s.scrapes[target] += s.curScrapes[target]
			s.samples[target] += s.curSamples[target]
			delete(s.curScrapes, target)
			delete(s.curSamples, target)
		}
	}
	for target, v := range scrapes {
		s.curScrapes[target] = v
	}
	for target, v := range by("redwire_samples_scraped_total", "target") {
		s.curSamples[target] = v
	}
	s.curDropped = by("redwire_samples_dropped_total", "reason")
	s.resources = append(s.resources, soakResources{at: time.Now(),
		goroutines: one("go_goroutines"), fds: one("process_open_fds"), rssB: one("process_resident_memory_bytes")})
	return true
}

// end stops reading, takes a last read and signals the process; what the
// running process counted moves to the ledger of ended processes.
func (s *soak) end(kill bool) {
	close(s.stopRead)
	s.reading.Wait()
	if !s.read() {
		s.t.Errorf("agent did not answer /metrics before it was stopped")
	}
	if kill {
		s.agent.kill()
	} else {
		s.agent.terminate()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for target, v := range s.curScrapes {
		s.scrapes[target] += v
		s.samples[target] += s.curSamples[target]
		s.slack[target]++
	}
	for reason, v := range s.curDropped {
		s.dropped[reason] += v
	}
}

func (s *soak) agentKill(rng *rand.Rand) {
	s.faults["agent kill"]++
	s.end(true)
	s.logf("agent SIGKILLed")
	time.Sleep(time.Duration(rng.IntN(5000)) * time.Millisecond)
	s.launch()
}

func (s *soak) receiverOutage(end time.Time, rng *rand.Rand) {
	s.faults["receiver outage"]++
	s.noRejections("before a receiver stop")
	s.prom.Stop()
	s.logf("receiver stopped")
	s.pause(end, 5, 60, rng)
	s.prom.Start()
	s.logf("receiver started")
}

func (s *soak) receiverFaults(end time.Time, rng *rand.Rand) {
	s.faults["receiver faults"]++
	switch n := 1 + rng.IntN(20); rng.IntN(3) {
	case 0:
		s.proxy.Fail(n, http.StatusInternalServerError, nil, "chaos")
		s.logf("proxy: %d answers 500", n)
	case 1:
		s.proxy.Fail(n, http.StatusTooManyRequests, http.Header{"Retry-After": {"1"}}, "slow down")
		s.logf("proxy: %d answers 429", n)
	default:
		s.proxy.Delay(3 * time.Second) // past remote_timeout: every send times out
		s.logf("proxy: requests time out")
	}
	s.pause(end, 5, 20, rng)
	s.proxy.Clear()
	s.logf("proxy: forwarding again")
}

func (s *soak) redisRestart(end time.Time, rng *rand.Rand) {
	s.faults["redis restart"]++
	s.flaky.Stop()
	s.logf("redis %s stopped", s.flaky.Addr())
	s.pause(end, 2, 20, rng)
	s.flaky.Start()
	s.logf("redis %s started", s.flaky.Addr())
}

// failover kills the Sentinel master and waits for the sentinels to
// promote a replica.
func (s *soak) failover() {
	ctx := context.Background()
	old, err := s.group.MasterAddr(ctx)
	if err != nil {
		s.t.Fatalf("master of soak: %v", err)
	}
	s.faults["failover"]++
	s.group.Master.Kill()
	s.logf("sentinel master %s SIGKILLed", old)
	harness.WaitFor(s.t, 2*time.Minute, "a replica promoted", func() (bool, error) {
		now, err := s.group.MasterAddr(ctx)
		return err == nil && now != old, err
	})
	s.logf("failover done")
}

// settle ends the chaos: everything up again, the backlog drained, the
// agent stopped gracefully.
func (s *soak) settle() {
	s.proxy.Clear()
	s.prom.Start() // a no-op if running
	s.logf("chaos over; waiting for the backlog to drain")
	harness.WaitFor(s.t, 10*time.Minute, "backlog drained and degraded mode left", func() (bool, error) {
		b, dg := s.agent.metric(s.t, "redwire_buffer_batches"), s.agent.metric(s.t, "redwire_degraded")
		return b == 0 && dg == 0, fmt.Errorf("%v batches buffered, degraded %v", b, dg)
	})
	s.end(false)
	s.logf("agent stopped")
}

func (s *soak) noRejections(when string) {
	ctx := context.Background()
	for _, m := range []string{"prometheus_tsdb_out_of_order_samples_total", "prometheus_tsdb_out_of_bound_samples_total"} {
		if v, err := s.prom.Metric(ctx, m); err != nil || v != 0 {
			s.t.Errorf("%s: receiver %s = %v (%v), want 0", when, m, v, err)
		}
	}
}

func (s *soak) check() {
	t := s.t
	s.noRejections("at the end")
	window := time.Since(s.begin) + time.Minute
	ctx := context.Background()

	// Scrapes: one redis_up sample each.
	series, err := s.prom.Samples(ctx, `redis_up`, window)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, rs := range series {
		got[rs.Labels["instance"]] += len(rs.Points)
	}
	var names []string
	for n := range s.scrapes {
		names = append(names, n)
	}
	for n := range got {
		if _, ok := s.scrapes[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var taken, delivered float64
	for _, n := range names {
		want := int(s.scrapes[n])
		t.Logf("target %s: %d scrapes counted, %d in the receiver (slack %d)", n, want, got[n], s.slack[n])
		if got[n] < want || got[n] > want+s.slack[n] {
			t.Errorf("target %s: the receiver has %d redis_up samples; the agent counted %d scrapes (+%d at most after its last reads)",
				n, got[n], want, s.slack[n])
		}
		taken += s.samples[n]
	}

	// Samples: taken = delivered + dropped, up to the scrapes that may
	// have happened after a last read, at most the largest scrape each.
	all, err := s.prom.Samples(ctx, `{job="redis"}`, window)
	if err != nil {
		t.Fatalf("counting delivered samples: %v", err)
	}
	for _, rs := range all {
		delivered += float64(len(rs.Points))
	}
	var dropped float64
	for reason, n := range s.dropped {
		dropped += n
		if n > 0 {
			t.Errorf("%v samples dropped (reason %q)", n, reason)
		}
	}
	var largest float64
	slackScrapes := 0
	for n := range s.scrapes {
		if s.scrapes[n] > 0 {
			largest = max(largest, s.samples[n]/s.scrapes[n]*1.5)
		}
		slackScrapes += s.slack[n]
	}
	t.Logf("samples: %v taken, %v delivered, %v dropped", taken, delivered, dropped)
	if delivered < taken-dropped || delivered > taken-dropped+largest*float64(slackScrapes) {
		t.Errorf("taken %v != delivered %v + dropped %v (allowing %v for scrapes after the last reads)",
			taken, delivered, dropped, largest*float64(slackScrapes))
	}

	s.checkFlat()
}

// checkFlat compares the last process's first and last quarter (after a
// minute of start-up and backlog replay): a leak of one goroutine, file
// or buffer per scrape or per send would grow them by hundreds.
func (s *soak) checkFlat() {
	t := s.t
	var rs []soakResources
	for _, r := range s.resources {
		if r.at.Sub(s.resources[0].at) > time.Minute {
			rs = append(rs, r)
		}
	}
	if len(rs) < 40 {
		t.Errorf("only %d resource readings of the last process; too few to tell a leak", len(rs))
		return
	}
	q := len(rs) / 4
	first, last := rs[:q], rs[len(rs)-q:]
	median := func(rs []soakResources, f func(soakResources) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	for _, c := range []struct {
		name        string
		f           func(soakResources) float64
		ratio, plus float64
	}{
		{"goroutines", func(r soakResources) float64 { return r.goroutines }, 1.25, 10},
		{"open files", func(r soakResources) float64 { return r.fds }, 1.25, 10},
		{"RSS bytes", func(r soakResources) float64 { return r.rssB }, 1.5, 32 << 20},
	} {
		a, b := median(first, c.f), median(last, c.f)
		t.Logf("%s: median %v in the first quarter, %v in the last", c.name, a, b)
		if b > a*c.ratio+c.plus {
			t.Errorf("%s grew from %v to %v over the last process's life", c.name, a, b)
		}
	}
}
