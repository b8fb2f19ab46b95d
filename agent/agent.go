// Package agent wires sources, buffer and remotewrite together and owns the
// agent's modes: normal (memory → receiver), degraded (receiver down:
// buffer to disk, sample less) and replay (drain the disk backlog
// oldest-first). It also serves the agent's own state over HTTP.
package agent

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redwire/redwire/agent/registration"
	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/remotewrite"
	"github.com/redwire/redwire/sample"
	"github.com/redwire/redwire/sources/discovery"
	"github.com/redwire/redwire/sources/redis"
)

// DefaultShutdownTimeout bounds how long a graceful stop spends sending
// what is queued; whatever is left then is committed to disk.
const DefaultShutdownTimeout = 10 * time.Second

// targetsFileRefresh re-reads the targets file even without a change
// event, for filesystems where inotify says nothing (NFS, bind mounts).
const targetsFileRefresh = time.Minute

// localBuffer names the buffer of buffer-only mode (no endpoint).
const localBuffer = "local"

// Options are what Run needs besides the config.
type Options struct {
	Logger *slog.Logger
	// Registry receives the agent's metrics and is what /metrics serves.
	// Callers add Go/process/build collectors as they see fit.
	Registry *prometheus.Registry
	// Version goes into the remote-write User-Agent.
	Version string
	// ShutdownTimeout bounds the final flush; 0 means the default.
	ShutdownTimeout time.Duration

	// Reload, if set, builds a new config (the file with the flags on
	// top); the agent calls it on POST /-/reload, on every value from
	// ReloadSignal (SIGHUP) and, with WatchConfig, when ConfigFile changes.
	Reload       func() (*Config, error)
	ReloadSignal <-chan os.Signal
	ConfigFile   string
	WatchConfig  bool

	// Now is the wall clock that stamps scraped samples; nil means
	// time.Now. Scrapes are paced by the monotonic clock whatever it says,
	// so a test can step it back as NTP or a VM restore would.
	Now func() time.Time
}

// Run runs the agent until ctx is cancelled, then stops scraping, sends
// what it can within the shutdown timeout, commits the rest to disk and
// returns. It returns early only if the agent cannot start (bad target,
// buffer locked by another agent, port in use, …).
func Run(ctx context.Context, cfg *Config, opts Options) error {
	opts.setDefaults()
	log, m := opts.Logger, newMetrics(opts.Registry)
	m.buffers.now = opts.Now
	a := &agentRun{cfg: cfg, log: log, m: m, modes: newModes(), now: opts.Now}
	defer a.close()
	if err := a.open(opts.Version); err != nil {
		return err
	}
	web, err := startWeb(cfg.Web, opts.Registry, log)
	if err != nil {
		return err
	}

	// Senders outlive the scrape loops: they get their own context,
	// cancelled only when the shutdown flush deadline has passed.
	sendCtx, cancelSend := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSend()
	a.sendCtx = sendCtx
	for _, s := range a.senders {
		a.startSender(s)
	}
	var maintaining sync.WaitGroup
	interval := time.Duration(cfg.Global.ScrapeInterval)
	maintaining.Go(func() { a.maintain(ctx, interval) })

	setup, self, err := a.scrapeSetup(cfg, opts.Registry)
	if err != nil {
		return err
	}
	tm := newTargetManager(m, log)
	reloads := make(chan targetSetup)
	var scraping sync.WaitGroup
	scraping.Go(func() { tm.run(ctx, setup, reloads) })
	selfLoops := newSelfRunner(ctx, &scraping)
	selfLoops.replace(self)
	log.Info("redwire started", "targets", len(cfg.Targets), "sentinels", len(cfg.Sentinels), "clusters", len(cfg.Clusters),
		"targets_file", cfg.TargetsFile, "endpoints", len(a.senders),
		"scrape_interval", cfg.Global.ScrapeInterval, "buffer", cfg.Buffer.Path,
		"buffer_mode", cfg.Buffer.Mode, "listen_address", web.addr())
	a.m.reloadSuccess.Set(1)
	a.m.reloadTime.SetToCurrentTime()
	rl := &reloader{a: a, reg: opts.Registry, reloads: reloads, self: selfLoops, load: opts.Reload, log: log, ctx: ctx}
	web.setReload(rl.reload)
	started := time.Now().UTC()
	web.setAPI(tm.view.targets, func() status { return a.status(&tm.view, started) }, a.gaps)
	var watching sync.WaitGroup
	watching.Go(func() { rl.watch(ctx, opts) })
	if cfg.Registration.Enabled() {
		r := registration.New(&cfg.Registration, a.registrationState(&tm.view, web.addr(), opts.Version, started), opts.Registry, log)
		a.registrar.Store(r)
		watching.Go(func() { r.Run(ctx) })
	}
	web.setReady()

	<-ctx.Done()
	log.Info("shutting down: sending what is queued", "timeout", opts.ShutdownTimeout)
	watching.Wait()
	scraping.Wait()
	maintaining.Wait()
	a.flush(opts.ShutdownTimeout, cancelSend)
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if err := web.stop(stopCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("web server: %w", err)
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
}

// flush lets the senders send what is queued, once scraping has stopped,
// for at most timeout; then cancelSend stops them and what is left stays
// in the buffers, which close commits to disk.
func (a *agentRun) flush(timeout time.Duration, cancelSend context.CancelFunc) {
	a.mu.Lock()
	for _, o := range a.outputs {
		o.buf.Drain()
	}
	a.mu.Unlock()
	flushed := make(chan struct{})
	go func() { a.sending.Wait(); close(flushed) }()
	select {
	case <-flushed:
	case <-time.After(timeout):
		a.log.Warn("shutdown timeout reached: committing what is left to the disk buffer")
		cancelSend()
		<-flushed
	}
}

// registrationState is what the registrar announces, read afresh each
// time it asks.
func (a *agentRun) registrationState(view *targetView, addr, version string, started time.Time) func() registration.State {
	return func() registration.State {
		degraded, _ := a.modes.degraded()
		st := registration.State{ListenURL: "http://" + addr, Version: version, Degraded: degraded, StartedAt: started}
		for _, t := range view.targets() {
			st.Targets = append(st.Targets, t.Instance)
		}
		for _, e := range a.status(view, started).Endpoints {
			st.BacklogBytes += e.BacklogBytes
		}
		return st
	}
}

// agentRun is one run of the agent: what Run opened and must close.
type agentRun struct {
	cfg     *Config
	log     *slog.Logger
	m       *metrics
	modes   *modes
	version string
	now     func() time.Time // stamps scraped samples; nil: time.Now
	// journalDir holds the buffers' crash journals; "" for none.
	journalDir string
	// last says when each target was last scraped, this run and the
	// previous one: agent_down ranges.
	last *lastScrapes

	// mu guards the outputs below: scrapes deliver to them while a
	// reload may add, replace or remove endpoints.
	mu        sync.RWMutex
	sendCtx   context.Context
	sending   sync.WaitGroup
	running   map[*sender]senderHandle // the goroutine of each sender
	sentinelM *discovery.SentinelMetrics
	pool      *scrapePool                            // shared by every loop while its size stays
	registrar atomic.Pointer[registration.Registrar] // nil unless registration is configured
	poolSize  int

	outputs []output  // where every scrape goes: each endpoint's buffer, or the local one
	senders []*sender // one per remote-write endpoint

	changes changeLog // the senders' recent state changes
}

// output is a buffer that every scrape goes to, by endpoint name.
type output struct {
	name string
	buf  *buffer.Buffer
	// full is the buffer's NoSpace as maintain last saw it, to log
	// when the disk fills and when it has room again, once each.
	full *atomic.Bool
}

func (a *agentRun) open(version string) error {
	a.version = version
	// Fail at start on a target that cannot be set up (unreadable TLS
	// files); the target manager creates them for real.
	for _, tc := range a.cfg.Targets {
		t, err := redis.NewTarget(tc, a.cfg.Global.ExternalLabels)
		if err != nil {
			return err
		}
		t.Close()
	}
	warning, err := buffer.PrepareDir(a.cfg.Buffer.Path)
	if err != nil {
		return fmt.Errorf("buffer.path: %w", err)
	}
	if warning != "" {
		a.log.Warn("buffer.path: " + warning)
	}
	if a.journalDir, err = a.cfg.Buffer.CrashJournalDir(); err != nil {
		a.log.Warn("no crash journal: a crash of the process loses the samples waiting in memory", "err", err)
	}
	if a.last, err = openLastScrapes(a.lastScrapesPaths()); err != nil {
		a.log.Warn("when targets were last scraped is not known: a gap before this start is not reported as agent_down", "err", err)
	}
	for _, field := range a.cfg.insecureTLS() {
		a.log.Warn("TLS certificate verification is off (insecure_skip_verify): anyone on the path can read and change the traffic", "field", field)
	}
	for _, ec := range a.cfg.RemoteWrite {
		c, err := remotewrite.NewClient(ec, version)
		if err != nil {
			return err
		}
		buf, err := a.openBuffer(ec.Label(), a.bufferOptions(ec))
		if err != nil {
			return err
		}
		a.addOutput(ec.Label(), buf)
		a.senders = append(a.senders, a.newSender(a.cfg, ec, c, buf))
	}
	if len(a.senders) == 0 {
		return a.openLocal()
	}
	return nil
}

// openLocal opens the buffer of buffer-only mode: everything goes to disk
// and stays there until it is exported or an endpoint is configured.
func (a *agentRun) openLocal() error {
	buf, err := a.openBuffer(localBuffer, buffer.Options{Capacity: 1, MaxBatch: 1, Always: true})
	if err != nil {
		return err
	}
	a.addOutput(localBuffer, buf)
	a.log.Warn("no remote_write endpoint configured: buffer-only mode, samples are kept in the local buffer", "path", a.cfg.Buffer.Path)
	return nil
}

func (a *agentRun) bufferOptions(ec remotewrite.EndpointConfig) buffer.Options {
	q := ec.QueueConfig
	return buffer.Options{
		Capacity: q.Capacity, MaxBatch: q.MaxSamplesPerSend, StoreBatch: max(q.MaxSamplesPerSend, a.cfg.Replay.MaxSamplesPerSend),
		Deadline: time.Duration(q.BatchSendDeadline), Always: a.cfg.Buffer.Mode == buffer.ModeAlways,
		JournalDir: a.journalDir,
	}
}

// newSender is the sender of ec's buffer under cfg's delivery settings.
func (a *agentRun) newSender(cfg *Config, ec remotewrite.EndpointConfig, c *remotewrite.Client, buf *buffer.Buffer) *sender {
	name, q := ec.Label(), ec.QueueConfig
	liveFirst := cfg.Replay.orderOf(ec) == ReplayLiveFirst
	buf.SetLiveFirst(liveFirst)
	budget := a.m.buffers.budgetOf(name)
	if budget != nil {
		budget.setLimits(ec)
	}
	return &sender{
		name: name, cfg: ec, client: meteredSender{next: c, name: name, m: a.m}, buf: buf, budget: budget,
		policy: remotewrite.Policy{MinBackoff: time.Duration(q.MinBackoff), MaxBackoff: time.Duration(q.MaxBackoff),
			Protocol: remotewrite.NewProtocol(ec.ProtobufMessage).WithNativeHistograms(ec.NativeHistograms),
			Window:   time.Duration(ec.OutOfOrderTimeWindow)},
		threshold:   cfg.Degraded.FailureThreshold,
		replayRate:  cfg.Replay.MaxSamplesPerSecond,
		replayBatch: cfg.Replay.MaxSamplesPerSend,
		startJitter: cfg.Replay.startJitter(),
		liveFirst:   liveFirst,
		identity:    agentIdentity(cfg.Global.ExternalLabels),
		probeEvery:  max(0, time.Duration(cfg.Degraded.ProbeInterval)),
		prog:        a.m.buffers.progressOf(name),
		changes:     &a.changes,
		modes:       a.modes, m: a.m, log: a.log.With("endpoint", name),
	}
}

// addOutput makes buf receive every scrape from now on; mu must be held
// once the agent runs.
func (a *agentRun) addOutput(name string, buf *buffer.Buffer) {
	a.outputs = append(a.outputs, output{name: name, buf: buf, full: new(atomic.Bool)})
	var prog *progress // an endpoint's delivery; the local buffer delivers nothing
	if name != localBuffer {
		prog = &progress{}
	}
	saved, err := buf.Gaps()
	if err != nil {
		a.log.Warn("the lost ranges saved in the buffer file do not read: starting a new list", "endpoint", name, "err", err)
	}
	g := a.cfg.Global
	a.m.buffers.add(name, buf, prog, newGapLog(time.Duration(g.ScrapeInterval), time.Duration(a.cfg.Degraded.Interval), saved))
	a.m.initEndpoint(name)
	a.m.countDropped(name, buf.RecoveryDrops())
}

// openBuffer opens an endpoint's store, moving a corrupt file aside.
func (a *agentRun) openBuffer(name string, opts buffer.Options) (*buffer.Buffer, error) {
	path := buffer.EndpointFile(a.cfg.Buffer.Path, name).Path
	store, info, err := buffer.OpenStore(path, buffer.StoreOptions{
		MaxBytes:     int64(a.cfg.Buffer.MaxBytes),
		MaxAge:       time.Duration(a.cfg.Buffer.MaxAge),
		MinFreeBytes: a.cfg.Buffer.StoreMinFree(),
		ThinFloor:    a.cfg.Buffer.StoreThinFloor(),
	})
	if err != nil {
		return nil, fmt.Errorf("buffer of endpoint %s: %w", name, err)
	}
	if info.MovedAside != "" {
		a.m.corruptions.WithLabelValues(name).Inc()
		a.log.Error("BUFFER FILE WAS CORRUPT: moved aside and started a fresh one; the old file is kept for inspection",
			"endpoint", name, "moved_to", info.MovedAside, "err", info.Err)
	}
	if st := store.Stats(); st.Batches > 0 {
		a.log.Info("found a backlog from an earlier run: replaying it first", "endpoint", name,
			"samples", st.Samples, "oldest", time.UnixMilli(st.OldestT).UTC())
	}
	buf := buffer.New(store, opts)
	recovered, err := buf.Journal()
	if err != nil {
		a.log.Warn("crash journal unusable: a crash of the process loses the samples waiting in memory; set buffer.crash_journal to a tmpfs directory",
			"endpoint", name, "err", err)
	}
	if recovered > 0 {
		a.log.Info("the crash journal held samples taken before the last stop: stored, sent first", "endpoint", name, "samples", recovered)
	}
	return buf, nil
}

// scrapeSetup is what the scrape side runs from for cfg: the target
// manager's setup and the loop of the agent's own metrics (nil if
// self_metrics is off).
func (a *agentRun) scrapeSetup(cfg *Config, reg *prometheus.Registry) (targetSetup, *scrapeLoop, error) {
	sources, err := a.discoverers(cfg, reg)
	if err != nil {
		return targetSetup{}, nil, err
	}
	g := cfg.Global
	if a.pool == nil || a.poolSize != g.MaxConcurrentScrapes {
		a.pool, a.poolSize = newScrapePool(g.MaxConcurrentScrapes), g.MaxConcurrentScrapes
	}
	slots := a.pool
	build := func(s scraper, keep bool) *scrapeLoop {
		l := &scrapeLoop{
			target: s, interval: time.Duration(g.ScrapeInterval),
			degradedInterval: time.Duration(cfg.Degraded.Interval),
			timeout:          time.Duration(g.ScrapeTimeout),
			modes:            a.modes, sink: a.enqueue, slots: slots, m: a.m,
			log: a.log.With("target", s.Name()), now: a.now, discard: a.discard, taken: a.scrapedAt,
			thinned: a.thinned,
		}
		if keep {
			l.keep = cfg.Degraded.Metrics
		}
		return l
	}
	var self *scrapeLoop
	if cfg.SelfMetrics.On() {
		host, _ := os.Hostname()
		self = build(newSelfScraper(reg, host, g.ExternalLabels), false)
	}
	setup := targetSetup{global: &cfg.Global, static: cfg.Targets, sources: sources,
		newLoop: func(s scraper) *scrapeLoop { return build(s, true) }}
	return setup, self, nil
}

// enqueue hands a scrape's batch to every output's buffer.
func (a *agentRun) enqueue(batch sample.Batch) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	for _, o := range a.outputs {
		a.m.samplesQueued.WithLabelValues(o.name).Add(float64(batch.Len()))
		dropped, err := o.buf.Append(batch)
		a.m.countDropped(o.name, dropped)
		if err != nil {
			a.log.Error("buffering a batch failed; kept in memory", "endpoint", o.name, "err", err)
		}
	}
}

// discoverers are the sources of targets beyond the static ones.
func (a *agentRun) discoverers(cfg *Config, reg prometheus.Registerer) ([]discovery.Discoverer, error) {
	interval := time.Duration(cfg.Global.ScrapeInterval)
	var ds []discovery.Discoverer
	if f := cfg.TargetsFile; f != "" {
		// Refuse a broken file at start, as for the config itself; later
		// a broken version is logged and the last good one kept.
		if _, err := discovery.ReadTargetsFile(f); err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("targets_file: %w", err)
		}
		ds = append(ds, discovery.NewFile(f, targetsFileRefresh, a.log))
	}
	if len(cfg.Sentinels) > 0 {
		if a.sentinelM == nil {
			a.sentinelM = discovery.NewSentinelMetrics(reg)
		}
		for _, sc := range cfg.Sentinels {
			d, err := discovery.NewSentinel(sc, interval, a.sentinelM, a.log.With("source", "sentinel"))
			if err != nil {
				return nil, err
			}
			ds = append(ds, d)
		}
	}
	for _, cc := range cfg.Clusters {
		d, err := discovery.NewCluster(cc, interval, reg, a.log.With("source", "cluster"))
		if err != nil {
			return nil, err
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// maintain applies buffer.max_age even while nothing is appended.
// It runs at the start-up scrape interval: a.cfg is the reloader's to change.
func (a *agentRun) maintain(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if r := a.registrar.Load(); r != nil {
			// Degraded flag, targets and backlog change without telling
			// anyone: let the registrar compare its value once per interval.
			r.Changed()
		}
		if err := a.last.save(false); err != nil {
			a.log.Debug("saving when targets were last scraped failed", "err", err)
		}
		a.mu.RLock()
		for _, o := range a.outputs {
			d, err := o.buf.Expire()
			if err != nil {
				a.log.Warn("expiring old buffered data failed", "endpoint", o.name, "err", err)
			}
			a.m.countDropped(o.name, []buffer.Dropped{d})
			a.saveGaps(o.name, o.buf)
			a.noteSpace(o)
			a.noteFill(o)
		}
		a.mu.RUnlock()
	}
}

// lastScrapesPaths are where lastScrapes keeps its file: in the crash
// journal's directory under a name that carries a hash of buffer.path (as
// the journals do, so that agents sharing the tmpfs never share it), and
// in buffer.path.
func (a *agentRun) lastScrapesPaths() (tmp, disk string) {
	if a.journalDir != "" {
		abs, err := filepath.Abs(a.cfg.Buffer.Path)
		if err != nil {
			abs = a.cfg.Buffer.Path
		}
		tmp = filepath.Join(a.journalDir, fmt.Sprintf("last-scrapes-%08x.slots", crc32.ChecksumIEEE([]byte(abs))))
	}
	return tmp, filepath.Join(a.cfg.Buffer.Path, lastScrapesFile)
}

// scrapedAt notes that target was scraped at t (ms). A target's first
// scrape of this run that comes more than an interval and a half after
// its last of the previous run ends an agent_down range.
func (a *agentRun) scrapedAt(target string, t int64, interval time.Duration) {
	prev, ok := a.last.scraped(target, t)
	if !ok || time.Duration(t-prev)*time.Millisecond <= interval*3/2 {
		return
	}
	from, to := time.UnixMilli(prev), time.UnixMilli(t)
	a.log.Info("target was not scraped while the agent was down: recorded as a lost range", "target", target,
		"from", from.UTC(), "to", to.UTC(), "down", to.Sub(from).Round(time.Millisecond))
	a.mu.RLock()
	defer a.mu.RUnlock()
	for _, o := range a.outputs {
		if secs := a.m.buffers.gapsOf(o.name).down(target, from, to); secs > 0 {
			a.m.lostSeconds.WithLabelValues(o.name, target, buffer.GapAgentDown).Add(secs)
		}
	}
}

// thinned notes a scrape of target at t (ms) taken at the degraded pace:
// every endpoint gets it, the healthy ones too.
func (a *agentRun) thinned(target string, t int64, every time.Duration) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	for _, o := range a.outputs {
		a.m.buffers.gapsOf(o.name).thinned(target, t, every)
	}
}

// noteSpace logs when an output's disk fills up and when it has room
// again: the setting in the way is in the buffer's error.
func (a *agentRun) noteSpace(o output) {
	err := o.buf.Stats().NoSpace
	switch full := err != nil; {
	case full && !o.full.Swap(true):
		a.log.Warn("buffer disk full: the newest samples wait in memory (capacity) and older ones are dropped (reason disk_full); free space or lower buffer.min_free_bytes",
			"endpoint", o.name, "err", err)
	case !full && o.full.Swap(false):
		a.log.Info("buffer disk has room again: writing to it", "endpoint", o.name)
	}
}

// noteFill follows how fast o's disk buffer grows, and warns once an
// outage when at that pace it fills before the outage has lasted as long
// again.
func (a *agentRun) noteFill(o output) {
	f := a.m.buffers.fillOf(o.name)
	if f == nil {
		return
	}
	now := time.Now()
	f.observe(now, o.buf.Stats().Store.Bytes)
	ttf, known := f.timeToFull(o.buf.Room())
	down := a.modes.isDown(o.name) || o.name == localBuffer
	if warn, lasted := f.outage(now, down, ttf, known); warn {
		a.log.Warn("the buffer will be full before long: at the current pace it reaches buffer.max_bytes or the disk's buffer.min_free_bytes sooner than the outage has lasted so far; the oldest data will then be thinned (down to buffer.thin_floor), and dropped once even that does not fit",
			"endpoint", o.name, "time_to_full", (time.Duration(ttf) * time.Second).Round(time.Second), "outage_so_far", lasted.Round(time.Second))
	}
}

// saveGaps writes an endpoint's lost ranges to its buffer file if they
// changed.
func (a *agentRun) saveGaps(name string, buf *buffer.Buffer) {
	g := a.m.buffers.gapsOf(name)
	gs, changed := g.changed()
	if !changed {
		return
	}
	err := buf.SaveGaps(gs)
	if g.saved(err) {
		a.log.Warn("saving the lost ranges to the buffer file failed; kept in memory, saved again later", "endpoint", name, "err", err)
	}
}

// close commits memory to disk and releases everything; safe after a
// partial open.
func (a *agentRun) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.last != nil {
		if err := a.last.save(true); err != nil {
			a.log.Warn("saving when targets were last scraped failed: the next start may overstate the time the agent was down", "err", err)
		}
	}
	for _, o := range a.outputs {
		a.saveGaps(o.name, o.buf)
		dropped, err := o.buf.Close()
		a.m.countDropped(o.name, dropped)
		if err != nil {
			a.log.Error("closing the buffer failed", "endpoint", o.name, "err", err)
		}
	}
}
