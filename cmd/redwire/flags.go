package main

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/redwire/redwire/agent"
	"github.com/redwire/redwire/remotewrite"
	"github.com/redwire/redwire/sources/redis"
)

// overrides are the command-line settings that replace config-file values.
// A flag is applied only when the user gave it, so a file value is never
// overwritten by a flag's default; defaults live in the packages.
type overrides struct {
	fns []func(*agent.Config) error
}

func (o *overrides) apply(cfg *agent.Config) error {
	for _, fn := range o.fns {
		if err := fn(cfg); err != nil {
			return err
		}
	}
	return nil
}

// when registers fn to run if the flag was set.
func (o *overrides) when(set *bool, fn func(*agent.Config) error) {
	o.fns = append(o.fns, func(c *agent.Config) error {
		if !*set {
			return nil
		}
		return fn(c)
	})
}

func (o *overrides) duration(fc *kingpin.FlagClause, apply func(*agent.Config, model.Duration)) {
	var set bool
	d := &durationValue{name: fc.Model().Name}
	fc.IsSetByUser(&set).SetValue(d)
	o.when(&set, func(c *agent.Config) error { apply(c, d.d); return nil })
}

// durationValue is a Prometheus duration flag whose parse error names the
// flag (kingpin's own message does not).
type durationValue struct {
	name string
	d    model.Duration
}

func (v *durationValue) Set(s string) error {
	if err := v.d.Set(s); err != nil {
		return fmt.Errorf("--%s: %w", v.name, err)
	}
	return nil
}

func (v *durationValue) String() string { return v.d.String() }

func (o *overrides) int(fc *kingpin.FlagClause, apply func(*agent.Config, int)) {
	var set bool
	v := fc.IsSetByUser(&set).Int()
	o.when(&set, func(c *agent.Config) error { apply(c, *v); return nil })
}

func (o *overrides) string(fc *kingpin.FlagClause, apply func(*agent.Config, string)) {
	var set bool
	v := fc.IsSetByUser(&set).String()
	o.when(&set, func(c *agent.Config) error { apply(c, *v); return nil })
}

// eachEndpoint applies fn to every remote_write endpoint.
func eachEndpoint(fn func(*remotewrite.EndpointConfig)) func(*agent.Config) {
	return func(c *agent.Config) {
		for i := range c.RemoteWrite {
			fn(&c.RemoteWrite[i])
		}
	}
}

// addAgentFlags registers every scalar setting as a flag named by its YAML
// path (buffer.path ↔ --buffer.path); the few long-standing names from
// Prometheus and redis_exporter habits (--web.listen-address, --redis.addr,
// --remote-write.url, --scrape.*) are kept as they are.
func addAgentFlags(app *kingpin.Application) *overrides {
	o := &overrides{}
	// This order is the order of --help and the order overrides apply in.
	addTargetFlags(app, o)
	addRemoteWriteFlags(app, o)
	addGlobalFlags(app, o)
	addBufferFlags(app, o)
	addDegradedFlags(app, o)
	addReplayFlags(app, o)
	addSelfMetricsFlags(app, o)
	addWebFlags(app, o)
	return o
}

// addTargetFlags registers the flags of targets and targets_file: the
// servers to poll. --redis.addr replaces the file's targets rather than
// adding to them, so a command line says exactly what is polled.
func addTargetFlags(app *kingpin.Application, o *overrides) {
	var addrsSet bool
	addrs := app.Flag("redis.addr", "Redis to poll: redis://[user:pass@]host:port[/db], rediss://… (TLS), valkey://, valkeys:// or unix:///path. Repeatable; replaces the config file's targets. Default "+agent.DefaultTarget+".").
		IsSetByUser(&addrsSet).Strings()
	o.when(&addrsSet, func(c *agent.Config) error {
		c.Targets = c.Targets[:0]
		for _, a := range *addrs {
			c.Targets = append(c.Targets, redis.TargetConfig{Addr: a})
		}
		return nil
	})

	o.string(app.Flag("targets-file", "YAML file listing more targets (entries as under targets:); re-read when it changes."),
		func(c *agent.Config, s string) { c.TargetsFile = s })
}

// addRemoteWriteFlags registers the flags of the remote_write section.
// --remote-write.url replaces the list; the queue settings apply to every
// endpoint, as a flag cannot name one.
func addRemoteWriteFlags(app *kingpin.Application, o *overrides) {
	var rwSet bool
	rw := app.Flag("remote-write.url", "Remote-write endpoint URL; replaces the config file's remote_write list. None set: buffer-only mode.").
		IsSetByUser(&rwSet).String()
	o.when(&rwSet, func(c *agent.Config) error {
		u, err := url.Parse(*rw)
		if err != nil {
			return fmt.Errorf("--remote-write.url: %w", err)
		}
		c.RemoteWrite = []remotewrite.EndpointConfig{remotewrite.NewEndpointConfig(u)}
		return nil
	})
	o.duration(app.Flag("remote-write.remote-timeout", "Timeout of one remote-write request (default 30s)."),
		func(c *agent.Config, d model.Duration) {
			eachEndpoint(func(e *remotewrite.EndpointConfig) { e.RemoteTimeout = d })(c)
		})
	o.string(app.Flag("remote-write.protobuf-message", "Message of remote-write requests: prometheus.WriteRequest (1.0, default) or io.prometheus.write.v2.Request (2.0; falls back to 1.0 when the receiver does not take it)."),
		func(c *agent.Config, s string) {
			eachEndpoint(func(e *remotewrite.EndpointConfig) { e.ProtobufMessage = remotewrite.Message(s) })(c)
		})
	var nativeSet bool
	native := app.Flag("remote-write.native-histograms", "Send Redis' latency histograms as native histograms (schema 0) instead of classic _bucket series; remote write 2.0 only (--remote-write.protobuf-message=io.prometheus.write.v2.Request). Default off.").
		IsSetByUser(&nativeSet).Bool()
	o.when(&nativeSet, func(c *agent.Config) error {
		eachEndpoint(func(e *remotewrite.EndpointConfig) { e.NativeHistograms = *native })(c)
		return nil
	})
	o.duration(app.Flag("remote-write.out-of-order-time-window", "The receiver's out-of-order window (Prometheus storage.tsdb.out_of_order_time_window): parked samples within it are sent again, backlog older than it is parked unsent. Default 0: none declared."),
		func(c *agent.Config, d model.Duration) {
			eachEndpoint(func(e *remotewrite.EndpointConfig) { e.OutOfOrderTimeWindow = d })(c)
		})
	var bpsSet, bpdSet bool
	bps := app.Flag("remote-write.max-bytes-per-second", "Link budget: request bytes (as sent, compressed) per second at most, e.g. 4KiB; the backlog waits first, live data last, nothing is dropped. Default 0: no limit.").
		IsSetByUser(&bpsSet).Bytes()
	o.when(&bpsSet, func(c *agent.Config) error {
		eachEndpoint(func(e *remotewrite.EndpointConfig) { e.MaxBytesPerSecond = *bps })(c)
		return nil
	})
	bpd := app.Flag("remote-write.max-bytes-per-day", "Link budget: request bytes per UTC day at most, e.g. 20MiB; once spent the backlog waits, then live data, in the buffer, until midnight UTC. Default 0: no limit.").
		IsSetByUser(&bpdSet).Bytes()
	o.when(&bpdSet, func(c *agent.Config) error {
		eachEndpoint(func(e *remotewrite.EndpointConfig) { e.MaxBytesPerDay = *bpd })(c)
		return nil
	})
	o.int(app.Flag("remote-write.queue-config.capacity", "Samples held in memory per endpoint (default 10000)."),
		func(c *agent.Config, n int) {
			eachEndpoint(func(e *remotewrite.EndpointConfig) { e.QueueConfig.Capacity = n })(c)
		})
	o.int(app.Flag("remote-write.queue-config.max-samples-per-send", "Most samples in one request (default 2000)."),
		func(c *agent.Config, n int) {
			eachEndpoint(func(e *remotewrite.EndpointConfig) { e.QueueConfig.MaxSamplesPerSend = n })(c)
		})
	o.duration(app.Flag("remote-write.queue-config.batch-send-deadline", "Longest wait before a partial batch is sent (default 5s)."),
		func(c *agent.Config, d model.Duration) {
			eachEndpoint(func(e *remotewrite.EndpointConfig) { e.QueueConfig.BatchSendDeadline = d })(c)
		})
	o.duration(app.Flag("remote-write.queue-config.min-backoff", "First retry delay of a failed send (default 500ms)."),
		func(c *agent.Config, d model.Duration) {
			eachEndpoint(func(e *remotewrite.EndpointConfig) { e.QueueConfig.MinBackoff = d })(c)
		})
	o.duration(app.Flag("remote-write.queue-config.max-backoff", "Longest retry delay of a failed send (default 30s)."),
		func(c *agent.Config, d model.Duration) {
			eachEndpoint(func(e *remotewrite.EndpointConfig) { e.QueueConfig.MaxBackoff = d })(c)
		})
}

// addGlobalFlags registers the flags of the global section; the interval
// and timeout keep their --scrape.* names.
func addGlobalFlags(app *kingpin.Application, o *overrides) {
	o.duration(app.Flag("scrape.interval", "How often each target is polled (global.scrape_interval; default 10s)."),
		func(c *agent.Config, d model.Duration) { c.Global.ScrapeInterval = d })
	o.duration(app.Flag("scrape.timeout", "Deadline of one poll (global.scrape_timeout; default 80% of the interval)."),
		func(c *agent.Config, d model.Duration) { c.Global.ScrapeTimeout = d })

	o.int(app.Flag("global.max-concurrent-scrapes", "Targets polled at once at most; a quarter of the slots is kept for failing targets (default 64)."),
		func(c *agent.Config, n int) { c.Global.MaxConcurrentScrapes = n })
	o.int(app.Flag("global.soft-fail-threshold", "Consecutive failed scrapes before redis_up turns 0 (default 3; 1: immediately, as redis_exporter)."),
		func(c *agent.Config, n int) { c.Global.SoftFailThreshold = n })

	var extSet bool
	ext := app.Flag("global.external-labels", "Label added to every sample, as name=value. Repeatable; merged over the config file's.").
		IsSetByUser(&extSet).Strings()
	o.when(&extSet, func(c *agent.Config) error {
		if c.Global.ExternalLabels == nil {
			c.Global.ExternalLabels = map[string]string{}
		}
		for _, kv := range *ext {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return fmt.Errorf("--global.external-labels %q: want name=value", kv)
			}
			c.Global.ExternalLabels[k] = v
		}
		return nil
	})
}

// addBufferFlags registers the flags of the buffer section.
func addBufferFlags(app *kingpin.Application, o *overrides) {
	o.string(app.Flag("buffer.path", "Directory of the local buffer (default ./data)."),
		func(c *agent.Config, s string) { c.Buffer.Path = s })
	var maxBytesSet bool
	maxBytes := app.Flag("buffer.max-bytes", "Disk buffer cap per endpoint, e.g. 512MiB; over it old data is thinned (buffer.thin-floor), then the oldest dropped (default 1GiB).").
		IsSetByUser(&maxBytesSet).Bytes()
	o.when(&maxBytesSet, func(c *agent.Config) error { c.Buffer.MaxBytes = *maxBytes; return nil })
	var minFreeSet bool
	minFree := app.Flag("buffer.min-free-bytes", "Free space a buffer write must leave on its filesystem, e.g. 64MiB; 0 keeps none back (default 16MiB).").
		IsSetByUser(&minFreeSet).Bytes()
	o.when(&minFreeSet, func(c *agent.Config) error { c.Buffer.MinFreeBytes = minFree; return nil })
	o.duration(app.Flag("buffer.thin-floor", "Coarsest resolution old data is thinned to before buffer.max-bytes drops any: one scrape per target every this long; 0 turns thinning off (default 5m)."),
		func(c *agent.Config, d model.Duration) { c.Buffer.ThinFloor = &d })
	o.duration(app.Flag("buffer.max-age", "Buffered data older than this is dropped (default 7d)."),
		func(c *agent.Config, d model.Duration) { c.Buffer.MaxAge = d })
	o.string(app.Flag("buffer.mode", "spill: write to disk when the receiver is down (default); always: commit every batch to disk before sending."),
		func(c *agent.Config, s string) { c.Buffer.Mode = s })
	o.string(app.Flag("buffer.crash-journal", "Tmpfs directory of the journal that keeps what memory holds through a crash of the process; auto (default: $RUNTIME_DIRECTORY, $XDG_RUNTIME_DIR/redwire or /dev/shm/redwire) or off."),
		func(c *agent.Config, s string) { c.Buffer.CrashJournal = s })
}

// addDegradedFlags registers the flags of the degraded section.
func addDegradedFlags(app *kingpin.Application, o *overrides) {
	o.int(app.Flag("degraded.failure-threshold", "Consecutive failed sends that declare an endpoint down (default 3)."),
		func(c *agent.Config, n int) { c.Degraded.FailureThreshold = n })
	o.duration(app.Flag("degraded.interval", "Scrape interval while an endpoint is down (default 4x scrape.interval)."),
		func(c *agent.Config, d model.Duration) { c.Degraded.Interval = d })
	o.duration(app.Flag("degraded.probe-interval", "While an endpoint is down, ask this often with an empty request whether it is back (default 2s; max_backoff or more: never)."),
		func(c *agent.Config, d model.Duration) { c.Degraded.ProbeInterval = d })
	var metricsSet bool
	keep := app.Flag("degraded.metrics", "Regex of metric families kept while degraded (default: all).").
		IsSetByUser(&metricsSet).String()
	o.when(&metricsSet, func(c *agent.Config) error {
		re, err := relabel.NewRegexp(*keep)
		if err != nil {
			return fmt.Errorf("--degraded.metrics: %w", err)
		}
		c.Degraded.Metrics = &re
		return nil
	})
}

// addReplayFlags registers the flags of the replay section.
func addReplayFlags(app *kingpin.Application, o *overrides) {
	var rateSet bool
	rate := app.Flag("replay.max-samples-per-second", "Rate limit of the backlog replay; 0: none (default).").
		IsSetByUser(&rateSet).Float64()
	o.when(&rateSet, func(c *agent.Config) error { c.Replay.MaxSamplesPerSecond = *rate; return nil })
	var replayBatchSet bool
	replayBatch := app.Flag("replay.max-samples-per-send", "Samples per request of the backlog replay (default 10000).").
		IsSetByUser(&replayBatchSet).Int()
	o.when(&replayBatchSet, func(c *agent.Config) error { c.Replay.MaxSamplesPerSend = *replayBatch; return nil })
	o.duration(app.Flag("replay.start-jitter", "Random wait, up to this, before the replay after an outage, so a fleet does not replay at once; 0: none (default 5s)."),
		func(c *agent.Config, d model.Duration) { c.Replay.StartJitter = &d })
	o.string(app.Flag("replay.order", "fifo (default): new scrapes wait behind the backlog; live_first: they go first, the backlog drains behind them (the receiver must take out-of-order samples)."),
		func(c *agent.Config, s string) { c.Replay.Order = agent.ReplayOrder(s) })
}

// addSelfMetricsFlags registers the flags of the self_metrics section.
func addSelfMetricsFlags(app *kingpin.Application, o *overrides) {
	var selfSet bool
	self := app.Flag("self-metrics.enabled", "Push redwire's own metrics (job=\"redwire\") with the Redis samples (default true; --no-self_metrics.enabled turns it off).").
		IsSetByUser(&selfSet).Bool()
	o.when(&selfSet, func(c *agent.Config) error { c.SelfMetrics.Enabled = self; return nil })
}

// addWebFlags registers the flags of the web section.
func addWebFlags(app *kingpin.Application, o *overrides) {
	o.string(app.Flag("web.listen-address", "Address of the HTTP server for /metrics and health (web.listen_address; default :9187)."),
		func(c *agent.Config, s string) { c.Web.ListenAddress = s })
	o.string(app.Flag("web.config.file", "exporter-toolkit web config for TLS and basic auth (web.config_file)."),
		func(c *agent.Config, s string) { c.Web.ConfigFile = s })
	var pprofSet bool
	pprofOn := app.Flag("web.enable-pprof", "Serve Go profiles under /debug/pprof/ (web.enable_pprof; default off).").
		IsSetByUser(&pprofSet).Bool()
	o.when(&pprofSet, func(c *agent.Config) error { c.Web.EnablePprof = *pprofOn; return nil })
}
