package agent

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/relabel"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sources/redis"
)

// TestSecondAgentOnSameBufferFailsFast: two agents must never share a
// buffer file; the second says so and exits instead of waiting forever.
func TestSecondAgentOnSameBufferFailsFast(t *testing.T) {
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	first := testConfig(t, prom.WriteURL(), redis.TargetConfig{Addr: r.URL()})
	runAgent(t, first)

	second := testConfig(t, prom.WriteURL(), redis.TargetConfig{Addr: r.URL()})
	second.Buffer.Path = first.Buffer.Path
	err := Run(t.Context(), second, Options{Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), first.Buffer.Path) || !strings.Contains(err.Error(), "another") {
		t.Fatalf("second agent on the same buffer: err = %v; want an error naming the path and another process", err)
	}
}

// TestCorruptBufferFileIsMovedAside: an unreadable buffer file is kept for
// inspection under a new name, counted, and the agent carries on.
func TestCorruptBufferFileIsMovedAside(t *testing.T) {
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	cfg := testConfig(t, prom.WriteURL(), redis.TargetConfig{Addr: r.URL()})
	file := buffer.EndpointFile(cfg.Buffer.Path, cfg.RemoteWrite[0].Label()).Path
	garbage := bytes.Repeat([]byte("not a bbolt file "), 1000)
	if err := os.WriteFile(file, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	a := runAgent(t, cfg)

	if v := gathered(t, a.reg, "redwire_buffer_corruptions_total", nil); v != 1 {
		t.Errorf("redwire_buffer_corruptions_total = %v, want 1", v)
	}
	moved, _ := filepath.Glob(file + ".corrupt-*")
	if len(moved) != 1 {
		t.Fatalf("moved-aside files: %v", moved)
	}
	if kept, _ := os.ReadFile(moved[0]); !bytes.Equal(kept, garbage) {
		t.Error("the corrupt file was not kept as it was")
	}
	if a.logs.Count("BUFFER FILE WAS CORRUPT") != 1 {
		t.Errorf("no loud log line:\n%s", a.logs.String())
	}
	queryOne(t, prom, fmt.Sprintf(`redis_up{instance=%q}`, r.Addr()), func(s harness.Series) bool { return s.Value == 1 })
}

// TestAlwaysModeSurvivesKill9: with buffer.mode: always a crash loses
// nothing even while the receiver is up.
func TestAlwaysModeSurvivesKill9(t *testing.T) {
	t.Parallel()
	bin := buildRedwire(t)
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	dir := t.TempDir()
	agent := startProcess(t, bin, dir, prom.WriteURL(), r.URL(), "--buffer.mode=always")
	harness.WaitFor(t, 30*time.Second, "scrapes", func() (bool, error) {
		return agent.metric(t, "redwire_target_scrapes_total") >= 5, nil
	})
	takenBefore := agent.metric(t, "redwire_target_scrapes_total")
	agent.kill()
	agent = startProcess(t, bin, dir, prom.WriteURL(), r.URL(), "--buffer.mode=always")
	harness.WaitFor(t, 30*time.Second, "scrapes after restart", func() (bool, error) {
		return agent.metric(t, "redwire_target_scrapes_total") >= 3 && agent.metric(t, "redwire_buffer_batches") == 0, nil
	})
	takenAfter := agent.metric(t, "redwire_target_scrapes_total")
	agent.terminate()

	got, want := delivered(t, prom, r.Addr()), int(takenBefore+takenAfter)
	if got < want || got > want+2 {
		t.Errorf("receiver has %d redis_up samples; agent took %d before the kill and %d after", got, int(takenBefore), int(takenAfter))
	}
	assertNoRejections(t, prom)
}

// TestKill9WhileHealthyLosesNothing: in the default buffer.mode (spill),
// with the receiver up and scrapes waiting in memory for their batch's
// deadline, the agent is SIGKILLed three times and restarted at once.
// The crash journal gives back what memory held: every scrape taken
// reaches the receiver. With buffer.crash_journal: off each kill loses
// the scrapes of the batch being assembled.
func TestKill9WhileHealthyLosesNothing(t *testing.T) {
	t.Parallel()
	bin := buildRedwire(t)
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	dir := t.TempDir()
	start := func() *agentProcess {
		addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
		return launchProcess(t, bin, addr, "--redis.addr="+r.URL(), "--remote-write.url="+prom.WriteURL(),
			"--scrape.interval=1s", "--buffer.path="+dir, "--web.listen-address="+addr,
			"--buffer.crash_journal="+dir+".journal", "--no-self_metrics.enabled",
			// The default deadline: each batch waits 5 scrapes in memory.
			"--remote-write.queue_config.batch_send_deadline=5s")
	}
	const kills = 3
	taken := 0.0
	agent := start()
	for k := range kills {
		harness.WaitFor(t, 30*time.Second, "scrapes waiting in memory", func() (bool, error) {
			return agent.metric(t, "redwire_target_scrapes_total") >= 2 && agent.metric(t, "redwire_queue_samples") > 0, nil
		})
		taken += agent.metric(t, "redwire_target_scrapes_total")
		agent.kill()
		agent = start()
		harness.WaitFor(t, 30*time.Second, fmt.Sprintf("the journal given back after kill %d", k+1), func() (bool, error) {
			return agent.logContains("the crash journal held samples"), nil
		})
	}
	harness.WaitFor(t, 30*time.Second, "scrapes after the last restart", func() (bool, error) {
		return agent.metric(t, "redwire_target_scrapes_total") >= 2, nil
	})
	taken += agent.metric(t, "redwire_target_scrapes_total")
	agent.terminate()

	// At most one scrape may fall between each counter read and the kill
	// that followed it; none may be missing.
	if got := delivered(t, prom, r.Addr()); got < int(taken) || got > int(taken)+kills {
		t.Errorf("receiver has %d redis_up samples; the agent took %d scrapes over %d kills", got, int(taken), kills)
	}
	assertNoRejections(t, prom)
}

// TestDegradedKeepsOnlyAllowedFamilies: with degraded.metrics set, an
// outage keeps only those families (and everything is delivered later).
func TestDegradedKeepsOnlyAllowedFamilies(t *testing.T) {
	t.Parallel()
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	cfg := outageConfig(t, prom.WriteURL(), r)
	keep := relabel.MustNewRegexp("redis_up|redis_connected_clients")
	cfg.Degraded.Metrics = &keep
	a := runAgent(t, cfg)
	target := map[string]string{"target": r.Addr()}

	queryOne(t, prom, `redis_up`, nil)
	beginOutage(t, a, prom, cfg, r.Addr(), 3)
	endOutage(t, a, prom, cfg)
	a.stop()

	up := samplesOf(t, prom, "redis_up", r.Addr())
	clients := samplesOf(t, prom, "redis_connected_clients", r.Addr())
	mem := samplesOf(t, prom, "redis_memory_used_bytes", r.Addr())
	if taken := int(gathered(t, a.reg, "redwire_target_scrapes_total", target)); up != taken || clients != taken {
		t.Errorf("allowed families: redis_up %d, redis_connected_clients %d samples; want %d each", up, clients, taken)
	}
	if mem >= up {
		t.Errorf("redis_memory_used_bytes has %d samples, redis_up %d: the filter did not thin it", mem, up)
	}
}

// TestGracefulStopCommitsMemoryToDisk: a SIGTERM while the receiver is
// away (and before the endpoint is declared down, so samples are still in
// memory) writes them to the buffer file; nothing taken is lost.
func TestGracefulStopCommitsMemoryToDisk(t *testing.T) {
	r := harness.StartRedis(t)
	cfg := outageConfig(t, fmt.Sprintf("http://127.0.0.1:%d/api/v1/write", harness.FreePort(t)), r)
	cfg.Degraded.FailureThreshold = 1000 // stay in memory mode
	a := runAgent(t, cfg)
	target := map[string]string{"target": r.Addr()}
	harness.WaitFor(t, 30*time.Second, "a few scrapes in memory", func() (bool, error) {
		return gathered(t, a.reg, "redwire_target_scrapes_total", target) >= 3, nil
	})
	if v := gathered(t, a.reg, "redwire_buffer_samples", nil); v != 0 {
		t.Fatalf("samples on disk before the stop: %v; the test wants them in memory", v)
	}
	a.stop()
	taken := gathered(t, a.reg, "redwire_samples_scraped_total", target)

	store, _, err := buffer.OpenStore(buffer.EndpointFile(cfg.Buffer.Path, cfg.RemoteWrite[0].Label()).Path, buffer.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if got := store.Stats().Samples; float64(got) != taken {
		t.Errorf("buffer file holds %d samples after a graceful stop, agent took %v", got, taken)
	}
}
