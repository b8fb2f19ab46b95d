package discovery

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"

	"github.com/redwire/redwire/sources/redis"
)

// ClusterConfig is one Redis Cluster whose nodes are found by asking it,
// as written under `clusters:`. Every node found becomes a target with
// the credentials, TLS settings and labels given here.
type ClusterConfig struct {
	// Name identifies the cluster: it becomes the redis_cluster label on
	// every node's samples and the group's source ("cluster:<name>").
	Name string `yaml:"name"`
	// Seeds are nodes to ask first (redis://, rediss://, valkey://,
	// valkeys://). Their scheme and userinfo apply to every node found,
	// so all seeds must share them.
	Seeds        []string          `yaml:"seeds"`
	Username     string            `yaml:"username,omitempty"`
	Password     config.Secret     `yaml:"password,omitempty"`
	PasswordFile string            `yaml:"password_file,omitempty"`
	TLS          config.TLSConfig  `yaml:"tls,omitempty"`
	Labels       map[string]string `yaml:"labels,omitempty"`
	// SoftFailThreshold applies to every node, as on a target; 0 leaves
	// the choice to whoever sets target defaults.
	SoftFailThreshold int `yaml:"soft_fail_threshold,omitempty"`
	// RefreshInterval is how often CLUSTER NODES is read again; 0 means
	// the caller's default (the scrape interval).
	RefreshInterval model.Duration `yaml:"refresh_interval,omitempty"`
}

// ClusterLabel is the label naming the cluster on every node's samples.
const ClusterLabel = "redis_cluster"

// MarshalYAML prints the cluster with the passwords in seeds redacted, so
// `redwire check-config` never shows a secret.
func (c ClusterConfig) MarshalYAML() (any, error) {
	type plain ClusterConfig
	p := plain(c)
	p.Seeds = c.redactedSeeds()
	return p, nil
}

func (c ClusterConfig) redactedSeeds() []string {
	out := make([]string, len(c.Seeds))
	for i, s := range c.Seeds {
		out[i] = redis.RedactAddr(s)
	}
	return out
}

// ClusterConfigError is a cluster setting that failed validation. Field
// is the path inside the cluster's entry ("seeds[1]"), so the config
// loader can build its own path (clusters[0].seeds[1]) to find the line.
type ClusterConfigError struct {
	Cluster string
	Field   string
	Err     error
}

func (e *ClusterConfigError) Error() string {
	name := e.Cluster
	if name == "" {
		name = "?"
	}
	return fmt.Sprintf("clusters[%s].%s: %v", name, e.Field, e.Err)
}

func (e *ClusterConfigError) Unwrap() error { return e.Err }

// Validate checks the cluster and says which field is wrong; a seed is
// shown with its password redacted.
func (c *ClusterConfig) Validate() error {
	fail := func(field string, err error) error {
		return &ClusterConfigError{Cluster: c.Name, Field: field, Err: err}
	}
	if c.Name == "" || !utf8.ValidString(c.Name) {
		return fail("name", errors.New("must be non-empty UTF-8 (it becomes the redis_cluster label)"))
	}
	if len(c.Seeds) == 0 {
		return fail("seeds", errors.New("must list at least one redis://, rediss://, valkey:// or valkeys:// URL"))
	}
	var first *url.URL
	for i, s := range c.Seeds {
		field := fmt.Sprintf("seeds[%d]", i)
		u, err := parseSeed(s)
		if err != nil {
			return fail(field, fmt.Errorf("%q: %w", redis.RedactAddr(s), err))
		}
		if first == nil {
			first = u
		} else if u.Scheme != first.Scheme || u.User.String() != first.User.String() {
			return fail(field, errors.New("scheme and userinfo must match seeds[0]: they apply to every node found"))
		}
	}
	if c.Password != "" && c.PasswordFile != "" {
		return fail("password_file", errors.New("password and password_file are mutually exclusive"))
	}
	if c.SoftFailThreshold < 0 {
		return fail("soft_fail_threshold", errors.New("must not be negative"))
	}
	if c.RefreshInterval < 0 {
		return fail("refresh_interval", errors.New("must not be negative"))
	}
	for k, v := range c.Labels {
		switch {
		case k == ClusterLabel:
			return fail("labels", fmt.Errorf("%s is set from name", ClusterLabel))
		case !model.LegacyValidation.IsValidLabelName(k) || strings.HasPrefix(k, "__"):
			return fail("labels", fmt.Errorf("invalid label name %q", k))
		case !utf8.ValidString(v):
			return fail("labels", fmt.Errorf("label %s: value is not UTF-8", k))
		}
	}
	return nil
}

// parseSeed checks that s is a TCP Redis URL of database 0: a cluster
// has no other database, and its nodes are found by host:port.
func parseSeed(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	switch u.Scheme {
	case "redis", "rediss", "valkey", "valkeys":
	default:
		return nil, fmt.Errorf("unsupported scheme %q (want redis, rediss, valkey or valkeys)", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("missing host")
	}
	if _, port, err := net.SplitHostPort(u.Host); err == nil {
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return nil, fmt.Errorf("bad port %q", port)
		}
	}
	if p := u.Path; p != "" && p != "/" && p != "/0" {
		return nil, fmt.Errorf("database %q: a cluster has only database 0", p)
	}
	return u, nil
}

// SetDirectory makes relative file paths relative to the config file.
func (c *ClusterConfig) SetDirectory(dir string) {
	c.PasswordFile = config.JoinDir(dir, c.PasswordFile)
	c.TLS.SetDirectory(dir)
}
