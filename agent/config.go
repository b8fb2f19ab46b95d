package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/relabel"
	yaml "go.yaml.in/yaml/v2"

	"github.com/redwire/redwire/agent/registration"
	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/remotewrite"
	"github.com/redwire/redwire/sources/discovery"
	"github.com/redwire/redwire/sources/redis"
)

// Defaults of the agent-wide settings; documented in
// configs/redwire.example.yml. Settings of one package live with it.
const (
	DefaultScrapeInterval = model.Duration(10 * time.Second)
	DefaultTarget         = "redis://127.0.0.1:6379"
	DefaultListenAddress  = ":9187"
	// DefaultMaxConcurrentScrapes bounds the scrape pool: enough for a
	// thousand targets at 10 s with a millisecond INFO each, small enough
	// that a burst does not hog a small edge host.
	DefaultMaxConcurrentScrapes = 64
	// DefaultFailureThreshold consecutive failures open the breaker.
	DefaultFailureThreshold = 3
	// DefaultProbeInterval: a down receiver's return is noticed within
	// about 2 s, at about 30 small requests a minute while it is away.
	DefaultProbeInterval = model.Duration(2 * time.Second)
	// degradedFactor × scrape_interval is the default degraded interval.
	degradedFactor = 4
	// scrapeTimeoutShare of the interval is the default scrape timeout:
	// enough for a slow INFO, and a scrape never runs into the next one.
	scrapeTimeoutShare = 0.8
)

// Config is the whole agent configuration: the YAML file with the command
// line applied on top.
type Config struct {
	Global  GlobalConfig         `yaml:"global,omitempty"`
	Targets []redis.TargetConfig `yaml:"targets,omitempty"`
	// TargetsFile is a YAML list of more targets, re-read when it changes.
	TargetsFile string                       `yaml:"targets_file,omitempty"`
	Sentinels   []discovery.SentinelConfig   `yaml:"sentinels,omitempty"`
	Clusters    []discovery.ClusterConfig    `yaml:"clusters,omitempty"`
	RemoteWrite []remotewrite.EndpointConfig `yaml:"remote_write,omitempty"`
	Buffer      buffer.Config                `yaml:"buffer,omitempty"`
	Degraded    DegradedConfig               `yaml:"degraded,omitempty"`
	Replay      ReplayConfig                 `yaml:"replay,omitempty"`
	SelfMetrics SelfMetricsConfig            `yaml:"self_metrics,omitempty"`
	Web         WebConfig                    `yaml:"web,omitempty"`
	// Registration announces the agent in etcd (optional).
	Registration registration.Config `yaml:"registration,omitempty"`

	source []byte // the YAML it came from, to name lines in errors
}

// GlobalConfig holds settings that apply to every target.
type GlobalConfig struct {
	ScrapeInterval model.Duration    `yaml:"scrape_interval,omitempty"`
	ScrapeTimeout  model.Duration    `yaml:"scrape_timeout,omitempty"`
	ExternalLabels map[string]string `yaml:"external_labels,omitempty"`
	// SoftFailThreshold is the default of every target's
	// soft_fail_threshold.
	SoftFailThreshold int `yaml:"soft_fail_threshold,omitempty"`
	// MaxConcurrentScrapes bounds how many targets are polled at once.
	MaxConcurrentScrapes int `yaml:"max_concurrent_scrapes,omitempty"`
	// SlowlogCommands is the default of every target's slowlog_commands.
	SlowlogCommands []string `yaml:"slowlog_commands,omitempty"`
}

// targetDefaults fills what a target leaves to the global settings; it
// applies to discovered targets as to static ones.
func (g *GlobalConfig) targetDefaults(t *redis.TargetConfig) {
	if t.SoftFailThreshold == 0 {
		t.SoftFailThreshold = g.SoftFailThreshold
	}
	if len(t.SlowlogCommands) == 0 {
		t.SlowlogCommands = g.SlowlogCommands
	}
}

// DegradedConfig is how the agent stretches its disk budget while an
// endpoint is down.
type DegradedConfig struct {
	// FailureThreshold consecutive failed sends declare the endpoint down.
	FailureThreshold int `yaml:"failure_threshold,omitempty"`
	// Interval is the scrape interval while degraded; default 4× the
	// normal one. Equal to scrape_interval disables thinning.
	Interval model.Duration `yaml:"interval,omitempty"`
	// Metrics, if set, keeps only the families whose name matches
	// (anchored regex) while degraded. redwire's own metrics are kept.
	Metrics *relabel.Regexp `yaml:"metrics,omitempty"`
	// ProbeInterval is how often, while the endpoint is down and its
	// batch waits out a backoff, an empty write request asks whether the
	// receiver is back (jittered; at most one in flight). An answer cuts
	// the backoff short, so a return is noticed within about this long
	// rather than max_backoff. 0: the default; max_backoff or more: no
	// probes.
	ProbeInterval model.Duration `yaml:"probe_interval,omitempty"`
}

// ReplayConfig shapes the drain of a backlog.
type ReplayConfig struct {
	// MaxSamplesPerSecond limits replay to respect a receiver's ingestion
	// limit (Mimir's default tenant limit is 10k/s); 0 means no limit.
	MaxSamplesPerSecond float64 `yaml:"max_samples_per_second,omitempty"`
	// MaxSamplesPerSend caps a request of the backlog. Larger than a live
	// request (queue_config.max_samples_per_send): a receiver takes bigger
	// requests at a lower cost per sample, and replay sends one at a time.
	// A receiver that answers 413 gets the request split.
	MaxSamplesPerSend int `yaml:"max_samples_per_send,omitempty"`
	// StartJitter bounds the random wait before the replay that follows
	// an outage, so that agents whose link comes back together do not
	// replay into one receiver in the same second; 0: none.
	StartJitter *model.Duration `yaml:"start_jitter,omitempty"`
	// Order is what goes first once a down endpoint answers again: the
	// backlog (fifo) or fresh scrapes (live_first); an endpoint's
	// replay_order overrides it.
	Order ReplayOrder `yaml:"order,omitempty"`
}

// ReplayOrder is replay.order.
type ReplayOrder string

const (
	// ReplayFIFO: the backlog drains oldest-first and new scrapes queue
	// behind it, so every series reaches the receiver in time order.
	ReplayFIFO ReplayOrder = "fifo"
	// ReplayLiveFirst: new scrapes go out at once, on their own stream,
	// while the backlog drains behind them within its pace; each series
	// is in order within each stream. For receivers that take
	// out-of-order samples (VictoriaMetrics; Prometheus, Mimir, Thanos
	// with an out-of-order window); with one that refuses them the
	// endpoint falls back to fifo (livefirst.go).
	ReplayLiveFirst ReplayOrder = "live_first"
)

// DefaultReplayMaxSamplesPerSend is replay.max_samples_per_send unset:
// Prometheus ingests 10k-sample requests about 1.5 times as fast per
// connection as 2000-sample ones (BenchmarkDrainVsFirehose).
const DefaultReplayMaxSamplesPerSend = 10000

// orderOf is the replay order of endpoint ec: its replay_order, else
// replay.order.
func (r ReplayConfig) orderOf(ec remotewrite.EndpointConfig) ReplayOrder {
	if ec.ReplayOrder != "" {
		return ReplayOrder(ec.ReplayOrder)
	}
	return r.Order
}

// startJitter is replay.start_jitter, 0 if unset (defaults not applied).
func (r ReplayConfig) startJitter() time.Duration {
	if r.StartJitter == nil {
		return 0
	}
	return max(0, time.Duration(*r.StartJitter))
}

// DefaultReplayStartJitter is replay.start_jitter unset.
const DefaultReplayStartJitter = model.Duration(5 * time.Second)

// SelfMetricsConfig controls pushing redwire's own metrics (job="redwire")
// with the Redis samples, so the central side sees every agent's backlog.
type SelfMetricsConfig struct {
	Enabled *bool `yaml:"enabled,omitempty"`
}

// On reports whether self metrics are pushed (default true).
func (c SelfMetricsConfig) On() bool { return c.Enabled == nil || *c.Enabled }

// WebConfig is the agent's own HTTP server.
type WebConfig struct {
	ListenAddress string `yaml:"listen_address,omitempty"`
	// ConfigFile is an exporter-toolkit web config (TLS, basic auth).
	ConfigFile string `yaml:"config_file,omitempty"`
	// EnablePprof serves Go's profiles under /debug/pprof/, behind the
	// same TLS and auth as the rest: what a CPU or memory question about
	// a running agent needs. Off by default, since a profile shows what
	// the agent is doing to whoever can reach the port.
	EnablePprof bool `yaml:"enable_pprof,omitempty"`
}

// LoadFile reads a YAML config. Unknown keys are errors naming the key and
// its line. Relative paths in the file are resolved against its directory.
// Defaults are not applied: call Finalize once flags are applied too.
func LoadFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cfg, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg.setDirectory(filepath.Dir(path))
	cfg.source = data
	return cfg, nil
}

// Parse decodes YAML strictly.
func Parse(data []byte) (*Config, error) {
	cfg := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.SetStrict(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) { // empty file = empty config
		// A URL that does not parse (remote_write url) is quoted whole in
		// url.Parse's error, password and all.
		var ue *url.Error
		if errors.As(err, &ue) && strings.Contains(ue.URL, "@") {
			ue.URL = "<invalid>"
		}
		return nil, fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	cfg.source = data
	return cfg, nil
}

func (c *Config) setDirectory(dir string) {
	for i := range c.Targets {
		c.Targets[i].SetDirectory(dir)
	}
	for i := range c.RemoteWrite {
		c.RemoteWrite[i].SetDirectory(dir)
	}
	for i := range c.Sentinels {
		c.Sentinels[i].SetDirectory(dir)
	}
	for i := range c.Clusters {
		c.Clusters[i].SetDirectory(dir)
	}
	c.Registration.SetDirectory(dir)
	if c.TargetsFile != "" && !filepath.IsAbs(c.TargetsFile) {
		c.TargetsFile = filepath.Join(dir, c.TargetsFile)
	}
	if c.Web.ConfigFile != "" && !filepath.IsAbs(c.Web.ConfigFile) {
		c.Web.ConfigFile = filepath.Join(dir, c.Web.ConfigFile)
	}
	if c.Buffer.Path != "" && !filepath.IsAbs(c.Buffer.Path) {
		c.Buffer.Path = filepath.Join(dir, c.Buffer.Path)
	}
}

// Finalize applies defaults and validates. Errors name the field path and,
// when the config came from a file, its line.
func (c *Config) Finalize() error {
	c.setDefaults()
	if err := c.validate(); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) && c.source != nil {
			fe.Line = lineOf(c.source, fe.Path)
		}
		return err
	}
	return nil
}

func (c *Config) setDefaults() {
	g := &c.Global
	if g.ScrapeInterval == 0 {
		g.ScrapeInterval = DefaultScrapeInterval
	}
	if g.ScrapeTimeout == 0 {
		g.ScrapeTimeout = model.Duration(float64(g.ScrapeInterval) * scrapeTimeoutShare)
	}
	if len(c.Targets) == 0 && c.TargetsFile == "" && len(c.Sentinels) == 0 && len(c.Clusters) == 0 {
		c.Targets = []redis.TargetConfig{{Addr: DefaultTarget}}
	}
	if g.MaxConcurrentScrapes == 0 {
		g.MaxConcurrentScrapes = DefaultMaxConcurrentScrapes
	}
	if g.SoftFailThreshold == 0 {
		g.SoftFailThreshold = redis.DefaultSoftFailThreshold
	}
	for i := range c.Targets {
		g.targetDefaults(&c.Targets[i])
	}
	for i := range c.Sentinels {
		if c.Sentinels[i].SoftFailThreshold == 0 {
			c.Sentinels[i].SoftFailThreshold = g.SoftFailThreshold
		}
	}
	for i := range c.Clusters {
		if c.Clusters[i].SoftFailThreshold == 0 {
			c.Clusters[i].SoftFailThreshold = g.SoftFailThreshold
		}
	}
	for i := range c.RemoteWrite {
		c.RemoteWrite[i].SetDefaults()
	}
	c.Buffer.SetDefaults()
	if c.Degraded.FailureThreshold == 0 {
		c.Degraded.FailureThreshold = DefaultFailureThreshold
	}
	if c.Replay.Order == "" {
		c.Replay.Order = ReplayFIFO
	}
	if c.Replay.StartJitter == nil {
		d := DefaultReplayStartJitter
		c.Replay.StartJitter = &d
	}
	if c.Replay.MaxSamplesPerSend == 0 {
		c.Replay.MaxSamplesPerSend = DefaultReplayMaxSamplesPerSend
	}
	if c.Degraded.Interval == 0 {
		c.Degraded.Interval = g.ScrapeInterval * degradedFactor
	}
	if c.Degraded.ProbeInterval == 0 {
		c.Degraded.ProbeInterval = DefaultProbeInterval
	}
	if c.Web.ListenAddress == "" {
		c.Web.ListenAddress = DefaultListenAddress
	}
	c.Registration.SetDefaults()
}

func validateLabels(ls map[string]string) error {
	for k := range ls {
		if !model.LegacyValidation.IsValidLabelName(k) || strings.HasPrefix(k, "__") {
			return fmt.Errorf("invalid label name %q", k)
		}
	}
	return nil
}

// String prints the effective config as YAML with every secret redacted.
func (c *Config) String() string {
	b, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Sprintf("<config: %v>", err)
	}
	return string(b)
}

// insecureTLS lists the fields that turn TLS certificate verification off
// (insecure_skip_verify: true): allowed, but worth a warning at every start.
func (c *Config) insecureTLS() []string {
	var out []string
	for i, t := range c.Targets {
		if t.TLS.InsecureSkipVerify {
			out = append(out, fmt.Sprintf("targets[%d].tls", i))
		}
	}
	for i, s := range c.Sentinels {
		if s.TLS.InsecureSkipVerify {
			out = append(out, fmt.Sprintf("sentinels[%d].tls", i))
		}
	}
	for i, cl := range c.Clusters {
		if cl.TLS.InsecureSkipVerify {
			out = append(out, fmt.Sprintf("clusters[%d].tls", i))
		}
	}
	for i, e := range c.RemoteWrite {
		if e.HTTPClientConfig.TLSConfig.InsecureSkipVerify {
			out = append(out, fmt.Sprintf("remote_write[%d].tls_config", i))
		}
	}
	if e := c.Registration.Etcd; e != nil && e.TLS.InsecureSkipVerify {
		out = append(out, "registration.etcd.tls")
	}
	return out
}
