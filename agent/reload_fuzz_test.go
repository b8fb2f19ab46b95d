package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redwire/redwire/buffer"
)

// reloadFuzzBase is the config the agent of FuzzReload runs before the
// reload (with a buffer path in its temp dir): one target and one named
// endpoint.
const reloadFuzzBase = `global: {scrape_interval: 10s}
targets:
  - addr: redis://127.0.0.1:6379
remote_write:
  - name: main
    url: http://127.0.0.1:9090/api/v1/write
`

// FuzzReload writes arbitrary bytes as the config file and reloads it as
// POST /-/reload does (the handler calls reloader.reload and answers 500
// with its error), on an agent whose senders and scrape loops are already
// stopped: nothing is scraped or sent, so no server is needed. Nothing may
// panic. A file that does not load and validate is refused with an error;
// a refused reload leaves the running config, endpoints and buffers as
// they were, and is never refused because the agent's own buffers lock
// each other; redwire_config_last_reload_successful says which it was. An
// accepted reload runs one endpoint, with its sender and its buffer, per
// remote_write entry of the new config, or the local buffer if there is
// none. Seeds are the example configs and broken variants; interesting
// inputs found by fuzzing are kept in testdata/fuzz/FuzzReload.
func FuzzReload(f *testing.F) {
	for _, seed := range []string{
		reloadFuzzBase,
		reloadFuzzBase + "  - url: http://127.0.0.1:9091/api/v1/write\n",
		reloadFuzzBase + "    headers: {X-Reloaded: \"1\"}\n",
		reloadFuzzBase + "    queue_confg: {}\n",
		"global: {scrape_interval: 5s}\ntargets: [{addr: redis://127.0.0.1:6380}]\n",
		"remote_write:\n  - name: main\n    url: http://127.0.0.1:9092/api/v1/write\n  - name: main\n    url: http://x/y\n",
		"targets:\n  - addr: rediss://h:1\n    tls: {ca_file: missing.pem}\n",
		"remote_write:\n  - url: http://x/y\n    tls_config: {ca_file: missing.pem}\n",
		"targets_file: targets.yml\nbuffer: {path: elsewhere}\nweb: {listen_address: \":1\"}\n",
		"",
		"{{{",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rig := newReloadRig(t)
		if err := os.WriteFile(rig.path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, loadErr := rig.r.load()
		a := rig.a
		cfg, senders, outputs := a.cfg, slices.Clone(a.senders), slices.Clone(a.outputs)

		err := rig.r.reload()
		success := gathered(t, rig.reg, "redwire_config_last_reload_successful", nil)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("reload refused with an empty error")
			}
			if a.cfg != cfg || !slices.Equal(a.senders, senders) || !slices.Equal(a.outputs, outputs) {
				t.Errorf("refused reload (%v) changed the running agent: endpoints %q, buffers %q", err, rig.names(), rig.outputNames())
			}
			if success != 0 {
				t.Errorf("redwire_config_last_reload_successful = %v after a refused reload", success)
			}
			if errors.Is(err, buffer.ErrLocked) {
				t.Errorf("reload refused because two of the agent's own buffers share a file: %v", err)
			}
			return
		}
		if loadErr != nil {
			t.Fatalf("reload accepted a file that does not load: %v", loadErr)
		}
		if success != 1 {
			t.Errorf("redwire_config_last_reload_successful = %v after an accepted reload", success)
		}
		if a.cfg == cfg {
			t.Error("accepted reload kept the old config")
		}
		var want []string
		for _, ec := range a.cfg.RemoteWrite {
			want = append(want, ec.Label())
		}
		slices.Sort(want)
		wantBufs := want
		if len(want) == 0 {
			wantBufs = []string{localBuffer}
		}
		got, bufs := rig.names(), rig.outputNames()
		if !slices.Equal(got, want) || !slices.Equal(bufs, wantBufs) || len(a.running) != len(a.senders) {
			t.Errorf("after reload: endpoints %q, buffers %q, %d senders; want endpoints %q, buffers %q", got, bufs, len(a.running), want, wantBufs)
		}
		for _, e := range a.senders {
			if _, ok := a.running[e]; !ok {
				t.Errorf("endpoint %s has no sender", e.name)
			}
		}
	})
}

// reloadRig is an agent as Run builds it, with its config file in a temp
// dir, except that the target manager and the scrape loops do not run and
// the senders stop at once: a reload is applied in full, but nothing
// reaches out to a server.
type reloadRig struct {
	a    *agentRun
	r    *reloader
	reg  *prometheus.Registry
	path string
}

func newReloadRig(t *testing.T) *reloadRig {
	t.Helper()
	dir := t.TempDir()
	rig := &reloadRig{reg: prometheus.NewRegistry(), path: filepath.Join(dir, "redwire.yml")}
	if err := os.WriteFile(rig.path, []byte(reloadFuzzBase+"buffer: {path: data}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	load := func() (*Config, error) { // as cmd/redwire's, without flags
		c, err := LoadFile(rig.path)
		if err != nil {
			return nil, err
		}
		return c, c.Finalize()
	}
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	a := &agentRun{cfg: cfg, log: log, m: newMetrics(rig.reg), modes: newModes()}
	rig.a = a
	if err := a.open("fuzz"); err != nil {
		a.close()
		t.Fatal(err)
	}
	// Senders and loops started with a done context return at once.
	stopped, stop := context.WithCancel(context.Background())
	stop()
	a.sendCtx = stopped
	for _, e := range a.senders {
		a.startSender(e)
	}
	a.m.reloadSuccess.Set(1)

	ctx, cancel := context.WithCancel(context.Background())
	reloads := make(chan targetSetup)
	var wg sync.WaitGroup
	wg.Go(func() { // the target manager's end of reloads
		for {
			select {
			case <-reloads:
			case <-ctx.Done():
				return
			}
		}
	})
	rig.r = &reloader{a: a, reg: rig.reg, reloads: reloads, self: newSelfRunner(stopped, &wg), load: load, log: log, ctx: ctx}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		for _, e := range a.senders {
			a.stopSender(e)
		}
		a.close()
	})
	return rig
}

// outputNames are the names of the buffers scrapes go to, sorted.
func (rig *reloadRig) outputNames() []string {
	var names []string
	for _, o := range rig.a.outputs {
		names = append(names, o.name)
	}
	slices.Sort(names)
	return names
}

// names are the running endpoints' names, sorted.
func (rig *reloadRig) names() []string {
	var names []string
	for _, e := range rig.a.senders {
		names = append(names, e.name)
	}
	slices.Sort(names)
	return names
}
