package discovery

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"

	"github.com/redwire/redwire/sources/redis"
)

// What a sentinels entry can monitor.
const (
	MonitorMaster    = "master"
	MonitorReplicas  = "replicas"
	MonitorSentinels = "sentinels"
)

// Target labels that identify a Sentinel-discovered server. The logical
// master keeps instance=<master_name> across failovers, so its series stay
// continuous; its current address is redwire_sentinel_master_address_info.
const (
	LabelMasterName   = "redis_sentinel_master_name"
	LabelSentinelRole = "redis_sentinel_role"
)

// SentinelConfig is one `sentinels:` entry: a master name and the
// sentinels that know where it is.
type SentinelConfig struct {
	MasterName string `yaml:"master_name"`
	// Addrs are the sentinels, host:port or redis://, rediss:// (TLS),
	// valkey://, valkeys:// URLs. The scheme also applies to the master and
	// replicas: a deployment with TLS on sentinels has it on servers too.
	Addrs []string `yaml:"addrs"`
	// Monitor lists what becomes a target: master, replicas, sentinels.
	// Default all three.
	Monitor []string `yaml:"monitor,omitempty"`

	// Credentials of the sentinels themselves (sentinel requirepass / ACL).
	SentinelUsername     string        `yaml:"sentinel_username,omitempty"`
	SentinelPassword     config.Secret `yaml:"sentinel_password,omitempty"`
	SentinelPasswordFile string        `yaml:"sentinel_password_file,omitempty"`
	// Credentials of the master and replicas.
	Username     string        `yaml:"username,omitempty"`
	Password     config.Secret `yaml:"password,omitempty"`
	PasswordFile string        `yaml:"password_file,omitempty"`
	// TLS applies to every connection when the scheme is rediss/valkeys.
	TLS               config.TLSConfig  `yaml:"tls,omitempty"`
	Labels            map[string]string `yaml:"labels,omitempty"`
	SoftFailThreshold int               `yaml:"soft_fail_threshold,omitempty"`
	// RefreshInterval re-resolves the master, replicas and peers even
	// when no Pub/Sub event says something changed; default the scrape
	// interval.
	RefreshInterval model.Duration `yaml:"refresh_interval,omitempty"`
}

// SetDirectory makes relative file paths relative to the config file.
func (c *SentinelConfig) SetDirectory(dir string) {
	c.SentinelPasswordFile = config.JoinDir(dir, c.SentinelPasswordFile)
	c.PasswordFile = config.JoinDir(dir, c.PasswordFile)
	c.TLS.SetDirectory(dir)
}

// Validate checks the entry and says which field is wrong.
func (c *SentinelConfig) Validate() error {
	if c.MasterName == "" {
		return errors.New("master_name: must not be empty")
	}
	if strings.ContainsAny(c.MasterName, " \t\r\n") {
		return fmt.Errorf("master_name %q: must not contain white space", c.MasterName)
	}
	if len(c.Addrs) == 0 {
		return errors.New("addrs: list at least one sentinel (host:port)")
	}
	scheme := ""
	for i, a := range c.Addrs {
		u, err := sentinelURL(a)
		if err != nil {
			return fmt.Errorf("addrs[%d] %q: %w", i, redis.RedactAddr(a), err)
		}
		if scheme != "" && tlsScheme(u.Scheme) != tlsScheme(scheme) {
			return fmt.Errorf("addrs[%d]: mixes TLS and plain sentinels", i)
		}
		scheme = u.Scheme
	}
	for i, m := range c.Monitor {
		if m != MonitorMaster && m != MonitorReplicas && m != MonitorSentinels {
			return fmt.Errorf("monitor[%d] %q: want master, replicas or sentinels", i, m)
		}
	}
	if c.SentinelPassword != "" && c.SentinelPasswordFile != "" {
		return errors.New("sentinel_password and sentinel_password_file are mutually exclusive")
	}
	if c.Password != "" && c.PasswordFile != "" {
		return errors.New("password and password_file are mutually exclusive")
	}
	if c.SoftFailThreshold < 0 {
		return errors.New("soft_fail_threshold: must not be negative")
	}
	if c.RefreshInterval < 0 {
		return errors.New("refresh_interval: must not be negative")
	}
	return nil
}

// monitors reports whether what (master, replicas, sentinels) is a target.
func (c *SentinelConfig) monitors(what string) bool {
	return len(c.Monitor) == 0 || slices.Contains(c.Monitor, what)
}

// sentinelURL parses a sentinel address, host:port or a URL.
func sentinelURL(addr string) (*url.URL, error) {
	if !strings.Contains(addr, "://") {
		addr = "redis://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, errors.New("not host:port or a redis:// URL")
	}
	switch u.Scheme {
	case "redis", "rediss", "valkey", "valkeys":
	default:
		return nil, fmt.Errorf("unsupported scheme %q (want redis, rediss, valkey or valkeys)", u.Scheme)
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return nil, errors.New("want host:port (sentinels have no default port worth guessing)")
	}
	return u, nil
}

func tlsScheme(s string) bool { return s == "rediss" || s == "valkeys" }

// scheme is the URL scheme of every connection of this entry.
func (c *SentinelConfig) scheme() string {
	u, err := sentinelURL(c.Addrs[0])
	if err != nil {
		return "redis"
	}
	return u.Scheme
}

// serverTarget is the target config of the master or a replica at addr.
func (c *SentinelConfig) serverTarget(name, role, addr string) redis.TargetConfig {
	return redis.TargetConfig{
		Name: name, Addr: c.scheme() + "://" + addr,
		Username: c.Username, Password: c.Password, PasswordFile: c.PasswordFile,
		TLS: c.TLS, Labels: c.labels(role), SoftFailThreshold: c.SoftFailThreshold,
	}
}

// sentinelTarget is the target config of the sentinel at addr.
func (c *SentinelConfig) sentinelTarget(addr string) redis.TargetConfig {
	return redis.TargetConfig{
		Addr:     c.scheme() + "://" + addr,
		Username: c.SentinelUsername, Password: c.SentinelPassword, PasswordFile: c.SentinelPasswordFile,
		TLS: c.TLS, Labels: c.labels("sentinel"), SoftFailThreshold: c.SoftFailThreshold,
	}
}

func (c *SentinelConfig) labels(role string) map[string]string {
	ls := map[string]string{LabelMasterName: c.MasterName, LabelSentinelRole: role}
	for k, v := range c.Labels {
		if _, ours := ls[k]; !ours {
			ls[k] = v
		}
	}
	return ls
}

// MarshalYAML prints the entry with any password in Addrs replaced, so
// `redwire check-config` never shows a secret.
func (c SentinelConfig) MarshalYAML() (any, error) {
	type plain SentinelConfig
	p := plain(c)
	p.Addrs = make([]string, len(c.Addrs))
	for i, a := range c.Addrs {
		p.Addrs[i] = a
		if strings.Contains(a, "@") {
			p.Addrs[i] = redis.RedactAddr(a)
		}
	}
	return p, nil
}
