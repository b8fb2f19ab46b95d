package redis

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/prometheus/common/config"
)

// TargetConfig is one Redis to poll, as written under `targets:`.
type TargetConfig struct {
	// Name becomes the instance label; empty means the address (host:port or
	// socket path), which is what redis_exporter users see today.
	Name string `yaml:"name,omitempty"`
	// Addr is redis://[user:pass@]host:port[/db], rediss://… (TLS),
	// valkey:// and valkeys:// (the same), or unix:///path.
	Addr         string            `yaml:"addr"`
	Username     string            `yaml:"username,omitempty"`
	Password     config.Secret     `yaml:"password,omitempty"`
	PasswordFile string            `yaml:"password_file,omitempty"`
	TLS          config.TLSConfig  `yaml:"tls,omitempty"`
	Labels       map[string]string `yaml:"labels,omitempty"`
	// SoftFailThreshold consecutive failed scrapes turn redis_up to 0;
	// default 3, 1 gives redis_exporter's immediate semantics.
	SoftFailThreshold int `yaml:"soft_fail_threshold,omitempty"`
	// SlowlogCommands, if not empty, replaces the built-in list of command
	// names kept as the cmd label of the slow log families (compared
	// case-insensitively; others are cmd="other"), so a site can follow its
	// own or a module's commands, or keep fewer names off the host.
	SlowlogCommands []string `yaml:"slowlog_commands,omitempty"`
}

// MarshalYAML prints the target with any password in Addr replaced, so
// `redwire check-config` never shows a secret.
func (c TargetConfig) MarshalYAML() (any, error) {
	type plain TargetConfig
	p := plain(c)
	p.Addr = RedactAddr(c.Addr)
	return p, nil
}

// RedactAddr returns addr with the password of its userinfo, if any,
// replaced by "xxxxx". Unparseable input is returned as "<invalid>" rather
// than echoed, since it may hold a secret.
func RedactAddr(addr string) string {
	u, err := url.Parse(addr)
	if err != nil {
		return "<invalid>"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// Validate checks the target and says which field is wrong.
func (c *TargetConfig) Validate() error {
	if c.Addr == "" {
		return errors.New("addr: must not be empty")
	}
	if _, err := c.endpoint(); err != nil {
		return fmt.Errorf("addr %q: %w", RedactAddr(c.Addr), err)
	}
	if c.SoftFailThreshold < 0 {
		return errors.New("soft_fail_threshold: must not be negative")
	}
	if c.Password != "" && c.PasswordFile != "" {
		return errors.New("password and password_file are mutually exclusive")
	}
	if err := ValidateSlowlogCommands(c.SlowlogCommands); err != nil {
		return err
	}
	return nil
}

// SetDirectory makes relative file paths relative to the config file.
func (c *TargetConfig) SetDirectory(dir string) {
	c.PasswordFile = config.JoinDir(dir, c.PasswordFile)
	c.TLS.SetDirectory(dir)
}

// Instance is the value of the instance label for this target.
func (c *TargetConfig) Instance() string {
	if c.Name != "" {
		return c.Name
	}
	ep, err := c.endpoint()
	if err != nil {
		return RedactAddr(c.Addr)
	}
	return ep.addr
}

// endpoint is a parsed Addr.
type endpoint struct {
	network  string // "tcp" or "unix"
	addr     string // host:port or socket path
	tls      bool
	db       int
	username string
	password string
}

func (c *TargetConfig) endpoint() (endpoint, error) {
	u, err := url.Parse(c.Addr)
	if err != nil {
		return endpoint{}, errors.New("not a URL (want redis://host:port, rediss://host:port, valkey://host:port or unix:///path)")
	}
	var ep endpoint
	if u.User != nil {
		ep.username = u.User.Username()
		ep.password, _ = u.User.Password()
	}
	switch u.Scheme {
	case "redis", "rediss", "valkey", "valkeys":
		ep.network, ep.tls = "tcp", u.Scheme == "rediss" || u.Scheme == "valkeys"
		if u.Host == "" {
			return endpoint{}, errors.New("missing host")
		}
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil {
			host, port = u.Host, "6379"
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return endpoint{}, fmt.Errorf("bad port %q", port)
		}
		ep.addr = net.JoinHostPort(host, port)
		if p := strings.Trim(u.Path, "/"); p != "" {
			db, err := strconv.Atoi(p)
			if err != nil || db < 0 {
				return endpoint{}, fmt.Errorf("bad database %q (want a number after the last /)", p)
			}
			ep.db = db
		}
	case "unix":
		ep.network = "unix"
		ep.addr = u.Path
		if ep.addr == "" {
			return endpoint{}, errors.New("missing socket path (want unix:///path/to/redis.sock)")
		}
		if db := u.Query().Get("db"); db != "" {
			n, err := strconv.Atoi(db)
			if err != nil || n < 0 {
				return endpoint{}, fmt.Errorf("bad database %q", db)
			}
			ep.db = n
		}
	default:
		return endpoint{}, fmt.Errorf("unsupported scheme %q (want redis, rediss, valkey, valkeys or unix)", u.Scheme)
	}
	return ep, nil
}

// credentials resolves username and password: explicit fields win over the
// URL's userinfo; password_file is read on every call so a rotated secret
// is picked up at the next connection.
func (c *TargetConfig) credentials(ep endpoint) (user, pass string, err error) {
	user, pass = ep.username, ep.password
	if c.Username != "" {
		user = c.Username
	}
	switch {
	case c.Password != "":
		pass = string(c.Password)
	case c.PasswordFile != "":
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return "", "", fmt.Errorf("password_file: %w", err)
		}
		pass = strings.TrimSpace(string(b))
	}
	return user, pass, nil
}
