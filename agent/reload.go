package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/remotewrite"
	"github.com/redwire/redwire/sources/redis"
)

// configDebounce lets an editor or config management finish writing the
// config file before it is read.
const configDebounce = time.Second

// senderHandle stops one endpoint's sender.
type senderHandle struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startSender runs s until the shutdown flush ends or a reload replaces it.
func (a *agentRun) startSender(s *sender) {
	ctx, cancel := context.WithCancel(a.sendCtx)
	h := senderHandle{cancel: cancel, done: make(chan struct{})}
	if a.running == nil {
		a.running = map[*sender]senderHandle{}
	}
	a.running[s] = h
	a.sending.Go(func() {
		defer close(h.done)
		s.run(ctx)
	})
}

// stopSender stops s and waits for it. A batch it was sending stays the
// buffer's head (Buffer.Release), so whoever sends next sends it first:
// nothing is lost or reordered.
func (a *agentRun) stopSender(s *sender) {
	h := a.running[s]
	h.cancel()
	<-h.done
	delete(a.running, s)
}

// selfRunner runs the loop of the agent's own metrics, replaced on reload.
type selfRunner struct {
	ctx    context.Context
	wg     *sync.WaitGroup
	cancel context.CancelFunc
	done   chan struct{}
}

func newSelfRunner(ctx context.Context, wg *sync.WaitGroup) *selfRunner {
	return &selfRunner{ctx: ctx, wg: wg}
}

func (r *selfRunner) replace(l *scrapeLoop) {
	if r.cancel != nil {
		r.cancel()
		<-r.done
		r.cancel = nil
	}
	if l == nil {
		return
	}
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan struct{})
	r.cancel, r.done = cancel, done
	r.wg.Go(func() {
		defer close(done)
		l.run(ctx)
	})
}

// reloader applies a new config to the running agent: targets, discovery,
// labels, intervals, degraded and replay settings and remote-write
// endpoints change in place; buffered data is neither lost nor reordered.
// A config that does not load or validate is refused whole and the running
// one stays.
type reloader struct {
	a       *agentRun
	reg     *prometheus.Registry
	reloads chan<- targetSetup
	self    *selfRunner
	load    func() (*Config, error)
	log     *slog.Logger
	ctx     context.Context // the agent's: a reload after shutdown is refused

	mu sync.Mutex // one reload at a time
}

// reload loads the config again and applies it.
func (r *reloader) reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.load == nil {
		return errors.New("reloading is not enabled")
	}
	cfg, err := r.load()
	if err == nil {
		err = r.apply(cfg)
	}
	if err != nil {
		r.a.m.reloadSuccess.Set(0)
		r.log.Error("config reload refused; the running config stays", "err", err)
		return err
	}
	r.a.m.reloadSuccess.Set(1)
	r.a.m.reloadTime.SetToCurrentTime()
	r.log.Info("config reloaded")
	return nil
}

func (r *reloader) apply(cfg *Config) error {
	if r.ctx.Err() != nil {
		return errors.New("shutting down")
	}
	a, old := r.a, r.a.cfg
	if !reflect.DeepEqual(cfg.Buffer, old.Buffer) {
		r.log.Warn("buffer settings change only at restart; keeping the running ones")
		cfg.Buffer = old.Buffer
	}
	if cfg.Web != old.Web {
		r.log.Warn("web settings change only at restart; keeping the running ones")
		cfg.Web = old.Web
	}
	// Everything that can fail is done before anything changes.
	for i, tc := range cfg.Targets {
		t, err := redis.NewTarget(tc, cfg.Global.ExternalLabels)
		if err != nil {
			return fmt.Errorf("targets[%d]: %w", i, err)
		}
		t.Close()
	}
	plan, err := a.planEndpoints(cfg)
	if err != nil {
		return err
	}
	setup, self, err := a.scrapeSetup(cfg, r.reg)
	if err != nil {
		plan.abort()
		return err
	}
	setup.restart = loopSettingsChanged(old, cfg)

	a.mu.Lock()
	a.cfg = cfg
	plan.commit()
	a.mu.Unlock()
	select {
	case r.reloads <- setup:
	case <-r.ctx.Done():
		return errors.New("shutting down")
	}
	r.self.replace(self)
	return nil
}

// loopSettingsChanged reports whether running loops must be rebuilt.
func loopSettingsChanged(old, cfg *Config) bool {
	og, ng := old.Global, cfg.Global
	return og.ScrapeInterval != ng.ScrapeInterval || og.ScrapeTimeout != ng.ScrapeTimeout ||
		og.MaxConcurrentScrapes != ng.MaxConcurrentScrapes ||
		!reflect.DeepEqual(old.Degraded, cfg.Degraded)
}

// endpointPlan is a reload's change to the endpoints, prepared (clients
// built, new buffers opened) so that commit cannot fail.
type endpointPlan struct {
	a       *agentRun
	cfg     *Config
	keep    map[string]bool                // unchanged endpoints
	replace map[string]*remotewrite.Client // same buffer, new sender
	add     map[string]*remotewrite.Client // new endpoints
	addBufs map[string]*buffer.Buffer      // their buffers, opened
	configs map[string]remotewrite.EndpointConfig
	local   *buffer.Buffer // buffer-only mode starts
	move    *endpointMove  // an unnamed endpoint's URL changed
}

// endpointMove is an unnamed endpoint whose URL changed: its buffer file
// is named after the URL, so it is renamed rather than left behind.
type endpointMove struct {
	from   *sender
	to     remotewrite.EndpointConfig
	client *remotewrite.Client
}

func (a *agentRun) planEndpoints(cfg *Config) (*endpointPlan, error) {
	p := &endpointPlan{a: a, cfg: cfg, keep: map[string]bool{}, replace: map[string]*remotewrite.Client{},
		add: map[string]*remotewrite.Client{}, addBufs: map[string]*buffer.Buffer{}, configs: map[string]remotewrite.EndpointConfig{}}
	running := map[string]*sender{}
	for _, s := range a.senders {
		running[s.name] = s
	}
	sameDelivery := a.cfg.Degraded.FailureThreshold == cfg.Degraded.FailureThreshold &&
		a.cfg.Degraded.ProbeInterval == cfg.Degraded.ProbeInterval && reflect.DeepEqual(a.cfg.Replay, cfg.Replay)
	for i, ec := range cfg.RemoteWrite {
		name := ec.Label()
		p.configs[name] = ec
		e, ok := running[name]
		if ok && sameDelivery && reflect.DeepEqual(e.cfg, ec) {
			p.keep[name] = true
			continue
		}
		c, err := remotewrite.NewClient(ec, a.version)
		if err != nil {
			p.abort()
			return nil, fmt.Errorf("remote_write[%d]: %w", i, err)
		}
		if ok {
			if !reflect.DeepEqual(e.cfg.QueueConfig, ec.QueueConfig) {
				a.log.Warn("queue_config changes of a running endpoint apply at restart; its memory queue keeps its size", "endpoint", name)
			}
			p.replace[name] = c
			continue
		}
		p.add[name] = c
	}
	// One unnamed endpoint gone and one unnamed endpoint new: the same
	// endpoint with another URL, which keeps its backlog.
	var gone []*sender
	for _, e := range a.senders {
		if _, still := p.configs[e.name]; !still {
			gone = append(gone, e)
		}
	}
	if len(gone) == 1 && len(p.add) == 1 && gone[0].cfg.Name == "" {
		for name, c := range p.add {
			ec := p.configs[name]
			_, err := os.Stat(buffer.EndpointFile(a.cfg.Buffer.Path, name).Path)
			if ec.Name == "" && os.IsNotExist(err) {
				p.move = &endpointMove{from: gone[0], to: ec, client: c}
				delete(p.add, name)
			}
		}
	}
	for i, ec := range cfg.RemoteWrite {
		name := ec.Label()
		if p.add[name] == nil {
			continue
		}
		buf, err := a.openBuffer(name, a.bufferOptions(ec))
		if err != nil {
			p.abort()
			return nil, fmt.Errorf("remote_write[%d]: %w", i, err)
		}
		p.addBufs[name] = buf
	}
	if len(cfg.RemoteWrite) == 0 && len(a.senders) > 0 {
		buf, err := a.openBuffer(localBuffer, buffer.Options{Capacity: 1, MaxBatch: 1, Always: true})
		if err != nil {
			p.abort()
			return nil, err
		}
		p.local = buf
	}
	return p, nil
}

// abort closes what the plan opened.
func (p *endpointPlan) abort() {
	for _, b := range p.addBufs {
		b.Close()
	}
	if p.local != nil {
		p.local.Close()
	}
}

// commit applies the plan; a.mu must be held, so no scrape is delivered
// half to the old and half to the new set.
func (p *endpointPlan) commit() {
	a := p.a
	var senders []*sender
	for _, e := range a.senders {
		switch {
		case p.move != nil && p.move.from == e:
			senders = append(senders, a.moveEndpoint(p.cfg, p.move))
		case p.keep[e.name]:
			senders = append(senders, e)
		case p.replace[e.name] != nil:
			a.stopSender(e)
			ne := a.newSender(p.cfg, p.configs[e.name], p.replace[e.name], e.buf)
			// The delivery state is the endpoint's, not the sender's: a
			// down endpoint stays down (and its buffer spilling) until the
			// new sender gets an answer.
			ne.state = e.state
			a.startSender(ne)
			senders = append(senders, ne)
			a.log.Info("endpoint settings changed: sender replaced, buffer kept", "endpoint", e.name)
		default:
			a.stopSender(e)
			a.removeOutput(e.name)
			a.modes.set(e.name, false)
			st := e.buf.Stats()
			a.saveGaps(e.name, e.buf)
			dropped, err := e.buf.Close()
			a.m.countDropped(e.name, dropped)
			path := buffer.EndpointFile(a.cfg.Buffer.Path, e.name).Path
			a.log.Warn("endpoint removed: its backlog stays on disk; add the endpoint back (same name) to send it, or move it with `redwire buffer export`",
				"endpoint", e.name, "backlog_samples", st.Store.Samples+int64(st.MemorySamples), "file", path, "err", err)
		}
	}
	for _, ec := range p.cfg.RemoteWrite {
		name := ec.Label()
		c := p.add[name]
		if c == nil {
			continue
		}
		buf := p.addBufs[name]
		a.addOutput(name, buf)
		s := a.newSender(p.cfg, ec, c, buf)
		a.startSender(s)
		senders = append(senders, s)
		a.log.Info("endpoint added", "endpoint", name)
	}
	if a.outputIndex(localBuffer) >= 0 && len(p.cfg.RemoteWrite) > 0 {
		a.removeOutput(localBuffer)
		a.log.Warn("left buffer-only mode: the local buffer keeps what it holds; move it with `redwire buffer export` and `redwire replay`")
	}
	if p.local != nil {
		a.addOutput(localBuffer, p.local)
		a.log.Warn("no remote_write endpoint configured any more: buffer-only mode")
	}
	a.senders = senders
}

// moveEndpoint re-points an unnamed endpoint at its new URL: its buffer
// file is renamed to the new URL's name (so a restart finds it), and its
// backlog and delivery state carry over. a.mu must be held.
func (a *agentRun) moveEndpoint(cfg *Config, mv *endpointMove) *sender {
	from, to := mv.from, mv.to.Label()
	a.stopSender(from)
	newPath := buffer.EndpointFile(a.cfg.Buffer.Path, to).Path
	if err := from.buf.Rename(newPath); err != nil {
		a.log.Error("cannot rename the buffer file; it keeps its old name until restart", "endpoint", to, "err", err)
	}
	a.removeOutput(from.name)
	a.addOutput(to, from.buf)
	ne := a.newSender(cfg, mv.to, mv.client, from.buf)
	ne.state = from.state
	a.modes.set(from.name, false)
	if ne.state.mode == modeDegraded {
		a.modes.set(to, true)
		a.m.degraded.WithLabelValues(to).Set(1)
		a.m.circuitState.WithLabelValues(to).Set(circuitOpen)
	}
	a.startSender(ne)
	a.log.Info("endpoint URL changed: backlog kept, buffer file renamed", "from", from.name, "to", to,
		"backlog_samples", from.buf.Stats().Store.Samples, "file", newPath)
	return ne
}

// removeOutput stops delivering scrapes to the named buffer and closes it
// if it is the local one (an endpoint's buffer is closed by the caller).
func (a *agentRun) removeOutput(name string) {
	i := a.outputIndex(name)
	if i < 0 {
		return
	}
	b := a.outputs[i].buf
	a.outputs = slices.Delete(a.outputs, i, i+1)
	a.m.buffers.remove(name)
	if name == localBuffer {
		b.Close()
	}
}

// outputIndex is the index of the named output, -1 if there is none.
func (a *agentRun) outputIndex(name string) int {
	return slices.IndexFunc(a.outputs, func(o output) bool { return o.name == name })
}

// watch reloads on every signal from opts.ReloadSignal and, with
// opts.WatchConfig, when the config file changes, until ctx is done.
func (r *reloader) watch(ctx context.Context, opts Options) {
	var changes <-chan fsnotify.Event
	if opts.WatchConfig && opts.ConfigFile != "" {
		w, err := fsnotify.NewWatcher()
		if err == nil {
			defer w.Close()
			err = w.Add(filepath.Dir(opts.ConfigFile))
		}
		if err != nil {
			r.log.Error("cannot watch the config file; reload with SIGHUP or POST /-/reload", "file", opts.ConfigFile, "err", err)
		} else {
			changes = w.Events
		}
	}
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-opts.ReloadSignal:
			r.log.Info("SIGHUP: reloading the config")
			r.reload()
		case ev := <-changes:
			if filepath.Clean(ev.Name) == filepath.Clean(opts.ConfigFile) {
				debounce = time.After(configDebounce)
			}
		case <-debounce:
			debounce = nil
			r.log.Info("config file changed: reloading")
			r.reload()
		}
	}
}
