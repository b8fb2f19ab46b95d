package discovery

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/redwire/redwire/sources/redis"
)

// sentinelTimeout bounds one question to one sentinel: a hung
// sentinel must not hold up asking the next one.
const sentinelTimeout = 2 * time.Second

// answer is what one sentinel says.
type answer struct {
	from     string
	master   string
	epoch    int64
	replicas []string
	peers    []string
	err      error
}

// ask queries one sentinel.
func (s *Sentinel) ask(ctx context.Context, addr string) answer {
	a := answer{from: addr}
	c := goredis.NewSentinelClient(s.options(addr))
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, sentinelTimeout)
	defer cancel()
	hp, err := c.GetMasterAddrByName(ctx, s.cfg.MasterName).Result()
	if err != nil {
		if errors.Is(err, goredis.Nil) {
			a.err = fmt.Errorf("does not monitor a master named %q", s.cfg.MasterName)
		} else {
			a.err = fmt.Errorf("SENTINEL get-master-addr-by-name: %w", err)
		}
		return a
	}
	if a.master, a.err = masterAddr(hp); a.err != nil {
		return a
	}
	m, err := c.Master(ctx, s.cfg.MasterName).Result()
	if err != nil {
		a.err = fmt.Errorf("SENTINEL master: %w", err)
		return a
	}
	a.epoch, _ = strconv.ParseInt(m["config-epoch"], 10, 64)
	if s.cfg.monitors(MonitorReplicas) {
		rs, err := c.Replicas(ctx, s.cfg.MasterName).Result()
		if err != nil {
			a.err = fmt.Errorf("SENTINEL replicas: %w", err)
			return a
		}
		a.replicas = instanceAddrs(rs)
	}
	ps, err := c.Sentinels(ctx, s.cfg.MasterName).Result()
	if err != nil {
		a.err = fmt.Errorf("SENTINEL sentinels: %w", err)
		return a
	}
	a.peers = instanceAddrs(ps)
	return a
}

// options are the connection settings for the sentinel at addr: one
// connection, no client-side retries (the loops here retry with backoff),
// credentials from the URL unless given explicitly, and a password file
// re-read at every connection.
//
// addr is host:port: peers learnt from SENTINEL sentinels have no URL, so
// scheme and user info come from the configured addresses (the same for
// all, as a sentinel deployment shares its auth and TLS settings).
func (s *Sentinel) options(addr string) *goredis.Options {
	scheme, user, pass := s.cfg.scheme(), "", ""
	for _, a := range s.cfg.Addrs {
		if u, err := sentinelURL(a); err == nil && u.User != nil {
			user = u.User.Username()
			pass, _ = u.User.Password()
			break
		}
	}
	cfg := s.cfg
	o := &goredis.Options{
		Addr: addr, Protocol: 2, PoolSize: 1, MaxRetries: -1,
		ReadBufferSize: redis.ConnBufferSize, WriteBufferSize: redis.ConnBufferSize,
		DisableIdentity: true, ContextTimeoutEnabled: true,
		DialTimeout:              sentinelTimeout,
		DialerRetries:            1,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		CredentialsProviderContext: func(context.Context) (string, string, error) {
			user, pass := user, pass
			if cfg.SentinelUsername != "" {
				user = cfg.SentinelUsername
			}
			switch {
			case cfg.SentinelPassword != "":
				pass = string(cfg.SentinelPassword)
			case cfg.SentinelPasswordFile != "":
				b, err := os.ReadFile(cfg.SentinelPasswordFile)
				if err != nil {
					return "", "", fmt.Errorf("sentinel_password_file: %w", err)
				}
				pass = strings.TrimSpace(string(b))
			}
			return user, pass, nil
		},
	}
	o.Dialer = redis.Dialer(nil)
	if tlsScheme(scheme) {
		o.Dialer = redis.Dialer(&cfg.TLS)
	}
	return o
}
