package agent

import (
	"context"
	"log/slog"
	"math"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/value"

	"github.com/redwire/redwire/sample"
	"github.com/redwire/redwire/sources/discovery"
	"github.com/redwire/redwire/sources/redis"
)

// staticSource names the targets written in the config file.
const staticSource = "config"

// targetManager runs one scrape loop per target and keeps the set of loops
// equal to the union of the static targets and every discovery source:
// a target that appears starts, one that disappears stops (its series end
// with stale markers, as in Prometheus), and one whose address alone
// changes — the logical master of a Sentinel after a failover — is
// re-pointed in place so its series and soft-failure state carry on.
type targetManager struct {
	global   *GlobalConfig // defaults of discovered targets
	external map[string]string
	newLoop  func(s scraper) *scrapeLoop
	m        *metrics
	log      *slog.Logger

	groups  map[string]discovery.Group // by source
	order   []string                   // sources in the order they first reported, static first
	running map[string]*managedTarget  // by instance
	dupes   map[string]string          // instance → source refused as a duplicate (logged once)
	view    targetView                 // what the HTTP API reads
	stopped sync.WaitGroup
}

// managedTarget is one running scrape loop and what started it.
type managedTarget struct {
	cfg    redis.TargetConfig
	source string
	target *redis.Target
	loop   *scrapeLoop
	cancel context.CancelFunc
	done   chan struct{}
}

func newTargetManager(m *metrics, log *slog.Logger) *targetManager {
	return &targetManager{
		m: m, log: log,
		groups: map[string]discovery.Group{}, running: map[string]*managedTarget{},
		dupes: map[string]string{},
	}
}

// targetSetup is what the manager runs from: the static targets, the
// discovery sources and how to build a loop. A reload sends a new one.
type targetSetup struct {
	global  *GlobalConfig
	static  []redis.TargetConfig
	sources []discovery.Discoverer
	newLoop func(s scraper) *scrapeLoop
	// restart stops every running loop so the next apply starts it anew:
	// set when loop settings (interval, timeout, degraded) changed.
	restart bool
}

// run applies setup, then every group the discoverers send and every
// setup a reload sends, until ctx is done; it returns once every loop has
// stopped. A reload replaces the discoverers but keeps the groups of the
// sources that are still configured until their new discoverer reports,
// so a reload that does not touch a source does not touch its targets.
func (tm *targetManager) run(ctx context.Context, setup targetSetup, reloads <-chan targetSetup) {
	up := make(chan discovery.Group)
	var discovering sync.WaitGroup
	var stopSources context.CancelFunc
	for {
		tm.global, tm.external, tm.newLoop = setup.global, setup.global.ExternalLabels, setup.newLoop
		if setup.restart {
			for inst, mt := range tm.running {
				delete(tm.running, inst)
				mt.cancel()
				<-mt.done
				mt.target.Close()
			}
		}
		keep := map[string]bool{staticSource: true}
		for _, d := range setup.sources {
			keep[d.Source()] = true
		}
		for src := range tm.groups {
			if !keep[src] {
				delete(tm.groups, src)
				tm.order = slices.DeleteFunc(tm.order, func(s string) bool { return s == src })
			}
		}
		var dctx context.Context
		dctx, stopSources = context.WithCancel(ctx)
		for _, d := range setup.sources {
			discovering.Go(func() { d.Run(dctx, up) })
		}
		tm.apply(ctx, discovery.Group{Source: staticSource, Targets: setup.static})

		reloaded := false
		for !reloaded {
			select {
			case g := <-up:
				tm.apply(ctx, g)
			case setup = <-reloads:
				reloaded = true
			case <-ctx.Done():
				stopSources()
				discovering.Wait()
				for _, mt := range tm.running {
					mt.cancel()
				}
				for _, mt := range tm.running {
					<-mt.done
					mt.target.Close()
				}
				tm.stopped.Wait()
				return
			}
		}
		// Old discoverers may be blocked sending: drain until they stop.
		stopSources()
		stopped := make(chan struct{})
		go func() { discovering.Wait(); close(stopped) }()
	drain:
		for {
			select {
			case <-up:
			case <-stopped:
				break drain
			}
		}
	}
}

// apply replaces one source's group and brings the loops in line.
func (tm *targetManager) apply(ctx context.Context, g discovery.Group) {
	if _, known := tm.groups[g.Source]; !known {
		tm.order = append(tm.order, g.Source)
	}
	tm.groups[g.Source] = g

	// What should run: first source to name an instance wins, so a static
	// target is never displaced by a discovered one of the same name.
	type want struct {
		cfg    redis.TargetConfig
		source string
	}
	wanted := map[string]want{}
	for _, src := range tm.order {
		for _, cfg := range tm.groups[src].Targets {
			tm.global.targetDefaults(&cfg)
			inst := cfg.Instance()
			if w, taken := wanted[inst]; taken {
				if tm.dupes[inst] != src {
					tm.log.Warn("target named twice: keeping the first", "instance", inst, "kept_from", w.source, "ignored_from", src)
					tm.dupes[inst] = src
				}
				continue
			}
			wanted[inst] = want{cfg, src}
		}
	}

	for inst, mt := range tm.running {
		if _, ok := wanted[inst]; !ok {
			tm.stop(inst, mt, "gone from "+mt.source)
		}
	}
	names := make([]string, 0, len(wanted))
	for inst := range wanted {
		names = append(names, inst)
	}
	slices.Sort(names)
	for _, inst := range names {
		w := wanted[inst]
		mt, ok := tm.running[inst]
		switch {
		case !ok:
			tm.start(ctx, w.cfg, w.source)
		case reflect.DeepEqual(mt.cfg, w.cfg):
			mt.source = w.source
		case sameButAddr(mt.cfg, w.cfg):
			if err := mt.target.Retarget(w.cfg, tm.external); err != nil {
				tm.log.Error("cannot re-point target; keeping the old address", "instance", inst, "err", err)
				continue
			}
			tm.log.Info("target re-pointed", "instance", inst,
				"from", redis.RedactAddr(mt.cfg.Addr), "to", redis.RedactAddr(w.cfg.Addr), "source", w.source)
			mt.cfg, mt.source = w.cfg, w.source
		default:
			tm.stop(inst, mt, "settings changed")
			tm.start(ctx, w.cfg, w.source)
		}
	}
	tm.view.publish(tm.running)
}

// sameButAddr reports whether two configs differ in their address only.
func sameButAddr(a, b redis.TargetConfig) bool {
	a.Addr, b.Addr = "", ""
	return reflect.DeepEqual(a, b)
}

func (tm *targetManager) start(ctx context.Context, cfg redis.TargetConfig, source string) {
	t, err := redis.NewTarget(cfg, tm.external)
	if err != nil {
		// Static targets were validated with the config; a discovered one
		// can still be wrong (a bad line in a targets file is refused
		// there, so this is rare).
		tm.log.Error("cannot start target", "source", source, "err", err)
		return
	}
	l := tm.newLoop(t)
	l.refresh = tm.groups[source].Refresh
	lctx, cancel := context.WithCancel(ctx)
	mt := &managedTarget{cfg: cfg, source: source, target: t, loop: l, cancel: cancel, done: make(chan struct{})}
	tm.running[cfg.Instance()] = mt
	go func() {
		defer close(mt.done)
		l.run(lctx)
	}()
	if source != staticSource {
		tm.log.Info("target added", "instance", cfg.Instance(), "addr", redis.RedactAddr(cfg.Addr), "source", source)
	}
}

// stop ends a target's loop in the background (a scrape in flight may
// take up to the scrape timeout), then writes stale markers for the series
// of its last scrape so they end now rather than fading out after the
// receiver's lookback window, and forgets its per-target self metrics.
func (tm *targetManager) stop(inst string, mt *managedTarget, why string) {
	delete(tm.running, inst)
	mt.cancel()
	tm.log.Info("target removed", "instance", inst, "reason", why)
	tm.stopped.Go(func() {
		<-mt.done
		_, wall := mt.loop.clock()
		mt.loop.endSeries(wall)
		mt.target.Close()
		tm.m.forgetTarget(inst)
	})
}

// endSeries hands a batch of stale markers for every series of the last
// scrape to the sink. Only for a target that is removed: at shutdown the
// series do not end, they pause.
func (l *scrapeLoop) endSeries(now time.Time) {
	if len(l.last) == 0 {
		return
	}
	// Never before the last scrape sent, even if the wall clock went
	// back: the receiver would refuse the markers as out of order.
	t := max(now.UnixMilli(), l.sentT+1)
	stale := make([]sample.Sample, len(l.last))
	for i, ls := range l.last {
		stale[i] = sample.Sample{Labels: ls, T: t, V: math.Float64frombits(value.StaleNaN)}
	}
	batch := sample.Batch{Samples: stale}
	l.sink(batch)
	l.last = nil
}
