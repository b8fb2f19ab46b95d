package agent

import (
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/redwire/redwire/internal/harness"
)

// killLoopSeedEnv replays a kill loop: its seed is logged by every run.
const killLoopSeedEnv = "REDWIRE_KILLLOOP_SEED"

// killMoment is what the receiver does while the agent runs toward a kill.
type killMoment int

const (
	momentHealthy killMoment = iota // answers at once: the kill finds scrapes in memory
	momentSlow                      // holds every request: the kill finds a send in flight
	momentOutage                    // answers 503: the kill finds memory spilling to bbolt, or spilt
)

func (m killMoment) String() string {
	return [...]string{"healthy", "slow", "outage"}[m]
}

// TestKill9LoopLosesNothing SIGKILLs the agent, in the default
// buffer.mode (spill, with the crash journal), at random moments and
// restarts it at once each time, against a real Prometheus behind the
// fault proxy: with scrapes waiting in memory, with a request in flight
// to a slow receiver, and while an outage spills memory to bbolt. At the
// end every scrape the processes counted as taken is in the receiver or
// counted as dropped, and the receiver refused nothing. In "slow" the
// receiver is slow throughout, kills included.
//
// The moments are random but replayable: the seed is logged, and
// REDWIRE_KILLLOOP_SEED=<seed> runs the same schedule (the same moments
// and delays; the agent's own timing still varies).
func TestKill9LoopLosesNothing(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(killLoopSeedEnv); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", killLoopSeedEnv, s, err)
		}
	}
	t.Logf("seed %d (replay with %s=%d)", seed, killLoopSeedEnv, seed)
	bin := buildRedwire(t)
	t.Run("mixed", func(t *testing.T) {
		t.Parallel()
		killLoop(t, bin, rand.New(rand.NewPCG(seed, 1)), 6, false)
	})
	t.Run("slow", func(t *testing.T) {
		t.Parallel()
		killLoop(t, bin, rand.New(rand.NewPCG(seed, 2)), 3, true)
	})
}

// killLoop runs the agent through kills kill -9s at moments drawn from
// rng; slow keeps the receiver slow throughout.
func killLoop(t *testing.T, bin string, rng *rand.Rand, kills int, slow bool) {
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	proxy := harness.StartProxy(t, prom.URL())
	dir := t.TempDir()
	// The default buffer configuration (startProcess: spill mode, the
	// crash journal in a directory that outlives the process as tmpfs
	// does); degraded scrapes at the scrape interval, so that an outage
	// commits to bbolt every second instead of every four.
	start := func() *agentProcess {
		return startProcess(t, bin, dir, proxy.URL()+"/api/v1/write", r.URL(), "--degraded.interval=1s")
	}
	// The proxy's delay is below remote_timeout (30 s): a slow receiver,
	// not a dead one.
	slowDown := func() { proxy.Delay(time.Duration(200+rng.IntN(600)) * time.Millisecond) }

	var taken, dropped float64 // summed over the processes
	agent := start()
	for k := range kills {
		moment := momentSlow
		if !slow {
			moment = killMoment(rng.IntN(3))
		}
		proxy.Clear()
		switch moment {
		case momentSlow:
			slowDown()
		case momentOutage:
			proxy.Fail(-1, http.StatusServiceUnavailable, nil, "outage")
		}
		// The scenario's random moment: up to three scrapes' worth after
		// the receiver changed, so an outage's kill falls before, during
		// or after its spill to bbolt.
		wait := time.Duration(rng.IntN(3000)) * time.Millisecond
		harness.WaitFor(t, 30*time.Second, "a scrape taken", func() (bool, error) {
			return agent.metric(t, "redwire_target_scrapes_total") >= 1, nil
		})
		time.Sleep(wait) // the moment of the kill is the scenario, not a synchronisation
		degraded, queued, stored := agent.metric(t, "redwire_degraded"), agent.metric(t, "redwire_queue_samples"),
			agent.metric(t, "redwire_buffer_batches")
		dropped += max(0, agent.metric(t, "redwire_samples_dropped_total"))
		n := agent.metric(t, "redwire_target_scrapes_total") // read last, right before the kill
		taken += n
		agent.kill()
		t.Logf("kill %d (%s, after %v): %v scrapes taken; degraded %v, %v samples in memory, %v batches on disk",
			k+1, moment, wait, n, degraded, queued, stored)
		agent = start()
	}

	// The last process: the receiver answers again (slowly, in "slow"),
	// the backlog drains, and nothing waits in memory.
	proxy.Clear()
	if slow {
		slowDown()
	}
	harness.WaitFor(t, 40*time.Second, "everything delivered", func() (bool, error) {
		return agent.metric(t, "redwire_target_scrapes_total") >= 2 && agent.metric(t, "redwire_degraded") == 0 &&
			agent.metric(t, "redwire_buffer_batches") == 0 && agent.metric(t, "redwire_queue_samples") == 0, nil
	})
	taken += agent.metric(t, "redwire_target_scrapes_total")
	dropped += max(0, agent.metric(t, "redwire_samples_dropped_total"))
	agent.terminate()

	// Every scrape taken is in the receiver: one redis_up sample each. A
	// scrape may fall between the counter's last read and each kill (or
	// the final stop): at most one more each, never one fewer. Nothing
	// here gives a reason to drop (no size or age limit is reached, the
	// receiver refuses nothing), so a drop would be a loss to explain.
	if dropped != 0 {
		t.Errorf("%v samples counted as dropped; this schedule should drop none", dropped)
	}
	got := delivered(t, prom, r.Addr())
	t.Logf("%d kills: %v scrapes taken, %d in the receiver", kills, taken, got)
	if got < int(taken) || got > int(taken)+kills+1 {
		t.Errorf("receiver has %d redis_up samples; the processes took %v scrapes over %d kills", got, taken, kills)
	}
	assertNoRejections(t, prom)
}
