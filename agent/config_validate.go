package agent

import (
	"errors"
	"fmt"

	"github.com/redwire/redwire/agent/registration"
	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/sources/discovery"
	"github.com/redwire/redwire/sources/redis"
)

// validate returns the first wrong setting, section by section in the
// order Config declares them. Each error is a FieldError naming the
// setting's YAML path, which Finalize turns into a line of the file.
func (c *Config) validate() error {
	if err := c.validateGlobal(); err != nil {
		return err
	}
	if err := c.validateTargets(); err != nil {
		return err
	}
	if err := c.validateSentinels(); err != nil {
		return err
	}
	if err := c.validateClusters(); err != nil {
		return err
	}
	if err := c.validateRemoteWrite(); err != nil {
		return err
	}
	if err := c.Buffer.Validate(); err != nil {
		return fieldErr("buffer", err)
	}
	if err := c.validateDegraded(); err != nil {
		return err
	}
	if err := c.validateReplay(); err != nil {
		return err
	}
	if err := c.Registration.Validate(); err != nil {
		var ce *registration.ConfigError
		if errors.As(err, &ce) {
			return fieldErr("registration."+ce.Field, ce.Err)
		}
		return fieldErr("registration", err)
	}
	return nil
}

// validateGlobal checks the global section.
func (c *Config) validateGlobal() error {
	g := c.Global
	if g.ScrapeInterval <= 0 {
		return fieldErr("global.scrape_interval", errors.New("must be positive"))
	}
	if g.ScrapeTimeout <= 0 || g.ScrapeTimeout > g.ScrapeInterval {
		return fieldErr("global.scrape_timeout", fmt.Errorf("%s must be positive and at most scrape_interval (%s)", g.ScrapeTimeout, g.ScrapeInterval))
	}
	if g.MaxConcurrentScrapes < 1 {
		return fieldErr("global.max_concurrent_scrapes", errors.New("must be at least 1"))
	}
	if g.SoftFailThreshold < 1 {
		return fieldErr("global.soft_fail_threshold", errors.New("must be at least 1"))
	}
	if err := redis.ValidateSlowlogCommands(g.SlowlogCommands); err != nil {
		return fieldErr("global", err)
	}
	if err := validateLabels(g.ExternalLabels); err != nil {
		return fieldErr("global.external_labels", err)
	}
	return nil
}

// validateTargets checks every static target. Two targets with one
// instance would write the same series.
func (c *Config) validateTargets() error {
	seen := map[string]int{}
	for i := range c.Targets {
		t := &c.Targets[i]
		path := fmt.Sprintf("targets[%d]", i)
		if err := t.Validate(); err != nil {
			return fieldErr(path, err)
		}
		if err := validateLabels(t.Labels); err != nil {
			return fieldErr(path+".labels", err)
		}
		if j, dup := seen[t.Instance()]; dup {
			return fieldErr(path, fmt.Errorf("instance %q is also targets[%d]: give one a distinct name", t.Instance(), j))
		}
		seen[t.Instance()] = i
	}
	return nil
}

// validateSentinels checks every sentinels entry. A master name is the
// source of its discoverer's group, which must be unique.
func (c *Config) validateSentinels() error {
	masters := map[string]int{}
	for i := range c.Sentinels {
		sc := &c.Sentinels[i]
		path := fmt.Sprintf("sentinels[%d]", i)
		if err := sc.Validate(); err != nil {
			return fieldErr(path, err)
		}
		if err := validateLabels(sc.Labels); err != nil {
			return fieldErr(path+".labels", err)
		}
		if j, dup := masters[sc.MasterName]; dup {
			return fieldErr(path, fmt.Errorf("master_name %q is also sentinels[%d]", sc.MasterName, j))
		}
		masters[sc.MasterName] = i
	}
	return nil
}

// validateClusters checks every clusters entry, naming the field inside
// the entry that is wrong. A cluster's name is the source of its group and
// its redis_cluster label, so it must be unique.
func (c *Config) validateClusters() error {
	clusters := map[string]int{}
	for i := range c.Clusters {
		cc := &c.Clusters[i]
		path := fmt.Sprintf("clusters[%d]", i)
		if err := cc.Validate(); err != nil {
			var ce *discovery.ClusterConfigError
			if errors.As(err, &ce) {
				return fieldErr(path+"."+ce.Field, ce.Err)
			}
			return fieldErr(path, err)
		}
		if err := validateLabels(cc.Labels); err != nil {
			return fieldErr(path+".labels", err)
		}
		if j, dup := clusters[cc.Name]; dup {
			return fieldErr(path+".name", fmt.Errorf("%q is also clusters[%d]", cc.Name, j))
		}
		clusters[cc.Name] = i
	}
	return nil
}

// validateRemoteWrite checks every endpoint and that each has a buffer
// file of its own.
func (c *Config) validateRemoteWrite() error {
	files := map[string]int{} // buffer file → endpoint
	file := func(endpoint string) string { return buffer.EndpointFile(c.Buffer.Path, endpoint).Path }
	for i := range c.RemoteWrite {
		e := &c.RemoteWrite[i]
		path := fmt.Sprintf("remote_write[%d]", i)
		if err := e.Validate(); err != nil {
			return fieldErr(path, err)
		}
		if err := validOrder(ReplayOrder(e.ReplayOrder)); err != nil {
			return fieldErr(path+".replay_order", err)
		}
		// Names that differ only in characters unsafe in a file name
		// ("a b", "a_b") would share one buffer file, which one of them
		// then waits for in vain.
		if file(e.Label()) == file(localBuffer) {
			// Buffer-only mode keeps its samples there; a reload from
			// buffer-only to this endpoint would wait for its own file.
			return fieldErr(path+".name", fmt.Errorf("%q is reserved for the buffer of buffer-only mode", e.Label()))
		}
		if j, dup := files[file(e.Label())]; dup {
			if other := c.RemoteWrite[j].Label(); other != e.Label() {
				return fieldErr(path, fmt.Errorf("endpoint %q would share its buffer file with remote_write[%d] %q: give one a distinct name", e.Label(), j, other))
			}
			return fieldErr(path, fmt.Errorf("endpoint %q is also remote_write[%d]: give one a distinct name", e.Label(), j))
		}
		files[file(e.Label())] = i
	}
	return nil
}

// validateDegraded checks the degraded section against the scrape
// interval it stretches.
func (c *Config) validateDegraded() error {
	d, g := c.Degraded, c.Global
	if d.FailureThreshold < 1 {
		return fieldErr("degraded.failure_threshold", errors.New("must be at least 1"))
	}
	if d.Interval < g.ScrapeInterval {
		return fieldErr("degraded.interval", fmt.Errorf("%s must be at least scrape_interval (%s)", d.Interval, g.ScrapeInterval))
	}
	return nil
}

// validateReplay checks the replay section.
func (c *Config) validateReplay() error {
	if c.Replay.MaxSamplesPerSend < 0 {
		return fieldErr("replay.max_samples_per_send", errors.New("must not be negative"))
	}
	if !(c.Replay.MaxSamplesPerSecond >= 0) { // NaN too: it would read as no limit
		return fieldErr("replay.max_samples_per_second", errors.New("must be a number, not negative"))
	}
	if err := validOrder(c.Replay.Order); err != nil {
		return fieldErr("replay.order", err)
	}
	if j := c.Replay.StartJitter; j != nil && *j < 0 {
		return fieldErr("replay.start_jitter", errors.New("must not be negative"))
	}
	return nil
}

// validOrder checks a replay order; empty is the default.
func validOrder(o ReplayOrder) error {
	switch o {
	case "", ReplayFIFO, ReplayLiveFirst:
		return nil
	}
	return fmt.Errorf("%q: must be %s or %s", o, ReplayFIFO, ReplayLiveFirst)
}
