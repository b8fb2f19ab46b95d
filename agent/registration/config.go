package registration

// The `registration:` section: the settings, their defaults and their
// checks.

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
)

// Defaults of registration.etcd; documented in configs/redwire.example.yml.
const (
	DefaultKeyPrefix   = "/redwire/agents"
	DefaultLeaseTTL    = model.Duration(30 * time.Second)
	DefaultDialTimeout = model.Duration(5 * time.Second)
)

// minLeaseTTL: keepalives go out every ttl/3, and below 5s one leader
// election or a long GC pause would expire the lease of a live agent.
const minLeaseTTL = model.Duration(5 * time.Second)

// Config is the `registration:` section. Registration is off unless a
// backend is configured; etcd is the only one.
type Config struct {
	Etcd *EtcdConfig `yaml:"etcd,omitempty"`
}

// Enabled reports whether the agent registers anywhere.
func (c *Config) Enabled() bool { return c.Etcd != nil }

// SetDefaults fills the defaults of the configured backend.
func (c *Config) SetDefaults() {
	if c.Etcd != nil {
		c.Etcd.setDefaults()
	}
}

// Validate checks the configured backend. Its error is a *ConfigError
// naming the field below the section ("etcd.endpoints: …"), so the
// config loader can build the field's full path and find its line.
func (c *Config) Validate() error {
	if c.Etcd == nil {
		return nil
	}
	if field, err := c.Etcd.check(); err != nil {
		return &ConfigError{Field: "etcd." + field, Err: err}
	}
	return nil
}

// SetDirectory makes relative file paths relative to the config file.
func (c *Config) SetDirectory(dir string) {
	if c.Etcd != nil {
		c.Etcd.setDirectory(dir)
	}
}

// ConfigError is a registration setting that failed validation. Field is
// the path inside the section ("etcd.endpoints[1]"), so the config loader
// can prefix its own ("registration.") to name the field and its line.
type ConfigError struct {
	Field string
	Err   error
}

func (e *ConfigError) Error() string { return e.Field + ": " + e.Err.Error() }

func (e *ConfigError) Unwrap() error { return e.Err }

// EtcdConfig registers the agent as one key in etcd,
// <key_prefix>/<agent_id>, whose JSON value is the agent's State,
// attached to a lease the agent keeps alive.
type EtcdConfig struct {
	// Endpoints are etcd client URLs: http://host:port, https://host:port
	// or host:port (TLS if tls is set). Credentials go in username and
	// password, never in a URL.
	Endpoints []string `yaml:"endpoints"`
	// KeyPrefix is the directory of the agents' keys; it starts with "/".
	KeyPrefix string `yaml:"key_prefix,omitempty"`
	// AgentID names the key; default the hostname. Two agents with the
	// same id overwrite each other's key.
	AgentID string `yaml:"agent_id,omitempty"`
	// LeaseTTL is how long the key outlives an agent that died without
	// deregistering; whole seconds, at least 5s.
	LeaseTTL model.Duration `yaml:"lease_ttl,omitempty"`
	// DialTimeout bounds connecting (authentication included) and each
	// request to etcd.
	DialTimeout  model.Duration   `yaml:"dial_timeout,omitempty"`
	Username     string           `yaml:"username,omitempty"`
	Password     config.Secret    `yaml:"password,omitempty"`
	PasswordFile string           `yaml:"password_file,omitempty"`
	TLS          config.TLSConfig `yaml:"tls,omitempty"`
}

// setDefaults fills unset fields. The hostname is left empty if it
// cannot be read; check then asks for agent_id.
func (c *EtcdConfig) setDefaults() {
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	if c.AgentID == "" {
		c.AgentID, _ = os.Hostname()
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
}

// setDirectory makes relative file paths relative to the config file.
func (c *EtcdConfig) setDirectory(dir string) {
	c.PasswordFile = config.JoinDir(dir, c.PasswordFile)
	c.TLS.SetDirectory(dir)
}

// check returns the first invalid field, relative to the etcd section.
func (c *EtcdConfig) check() (string, error) {
	if len(c.Endpoints) == 0 {
		return "endpoints", errors.New("required: at least one etcd client URL")
	}
	var plain, secure string // an endpoint of each kind, for the mixing error
	for i, ep := range c.Endpoints {
		tls, err := checkEtcdEndpoint(ep)
		if err != nil {
			return fmt.Sprintf("endpoints[%d]", i), err
		}
		switch {
		case tls == nil:
		case *tls:
			secure = ep
		default:
			plain = ep
		}
	}
	if plain != "" && secure != "" {
		return "endpoints", fmt.Errorf("mixes plain (%s) and TLS (%s) endpoints", plain, secure)
	}
	if plain != "" && c.TLS != (config.TLSConfig{}) {
		return "tls", fmt.Errorf("set, but endpoint %s is plain http: use https://", plain)
	}
	if !strings.HasPrefix(c.KeyPrefix, "/") {
		return "key_prefix", fmt.Errorf("%q must start with /", c.KeyPrefix)
	}
	if c.AgentID == "" {
		return "agent_id", errors.New("required: the hostname could not be read")
	}
	if strings.Contains(c.AgentID, "/") {
		return "agent_id", fmt.Errorf("%q must not contain /: it is one segment of the key", c.AgentID)
	}
	if c.LeaseTTL < minLeaseTTL {
		return "lease_ttl", fmt.Errorf("%s must be at least %s", c.LeaseTTL, minLeaseTTL)
	}
	if time.Duration(c.LeaseTTL)%time.Second != 0 {
		return "lease_ttl", fmt.Errorf("%s must be whole seconds (etcd's lease granularity)", c.LeaseTTL)
	}
	if c.DialTimeout <= 0 {
		return "dial_timeout", errors.New("must be positive")
	}
	hasPassword := c.Password != "" || c.PasswordFile != ""
	if c.Password != "" && c.PasswordFile != "" {
		return "password_file", errors.New("password and password_file are mutually exclusive")
	}
	if hasPassword && c.Username == "" {
		return "username", errors.New("required with password or password_file")
	}
	if c.Username != "" && !hasPassword {
		return "password", errors.New("required with username (or password_file)")
	}
	if err := c.TLS.Validate(); err != nil {
		return "tls", err
	}
	return "", nil
}

// checkEtcdEndpoint accepts what clientv3 dials. It reports whether the
// endpoint asks for TLS (https, unixs), for plain (http, unix) or leaves
// it to the tls setting (host:port, nil). An endpoint with credentials is
// refused and not echoed.
func checkEtcdEndpoint(ep string) (*bool, error) {
	if ep == "" {
		return nil, errors.New("must not be empty")
	}
	if !strings.Contains(ep, "://") {
		if _, _, err := net.SplitHostPort(ep); err != nil {
			return nil, fmt.Errorf("%q: want http://host:port, https://host:port or host:port", ep)
		}
		return nil, nil
	}
	u, err := url.Parse(ep)
	if err != nil {
		return nil, errors.New("not a valid URL")
	}
	if u.User != nil {
		return nil, errors.New("credentials in the URL: use username and password (or password_file)")
	}
	secure := u.Scheme == "https" || u.Scheme == "unixs"
	switch u.Scheme {
	case "http", "https":
		if u.Port() == "" {
			return nil, fmt.Errorf("%q: want %s://host:port", ep, u.Scheme)
		}
	case "unix", "unixs":
	default:
		return nil, fmt.Errorf("%q: unsupported scheme %q (want http, https, unix or unixs)", ep, u.Scheme)
	}
	return &secure, nil
}

// key is where the agent registers.
func (c *EtcdConfig) key() string {
	return strings.TrimRight(c.KeyPrefix, "/") + "/" + c.AgentID
}

// usesTLS reports whether the client dials with TLS: an https endpoint or
// a tls section (validation refuses both with a plain http endpoint).
func (c *EtcdConfig) usesTLS() bool {
	if c.TLS != (config.TLSConfig{}) {
		return true
	}
	return slices.ContainsFunc(c.Endpoints, func(ep string) bool {
		return strings.HasPrefix(ep, "https://") || strings.HasPrefix(ep, "unixs://")
	})
}

// password is read on every connection, so a rotated password_file is
// picked up at the next reconnect.
func (c *EtcdConfig) password() (string, error) {
	if c.PasswordFile == "" {
		return string(c.Password), nil
	}
	b, err := os.ReadFile(c.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("password_file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
