package redis

import (
	"context"
	"errors"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/redwire/redwire/sample"
)

// A collector reads one Redis subsystem beyond INFO (slowlog, latency,
// config, …), one file each. Collectors run after INFO, on the same
// connection, with INFO's parsed reply; they keep whatever state they need
// between scrapes (a Target scrapes one at a time).
//
// A collector never fails the scrape: INFO decides redis_up. What it cannot
// read it leaves out.
type collector interface {
	collect(ctx context.Context, s *session, sc *sample.Scrape)
}

// session is one scrape's view of the server.
type session struct {
	client   *goredis.Client
	info     *Info
	optional *optionalCommands
}

// optionalCommands remembers the commands a server refuses. Managed
// services (ElastiCache, Memorystore, Azure Cache, …) disable or rename
// CONFIG, LATENCY and SLOWLOG, and ACL users may lack them: each is tried,
// and after a refusal skipped quietly for the life of the target, so it
// costs one round trip once and never turns redis_up to 0.
type optionalCommands struct {
	refused map[string]bool
}

// do runs an optional command. ok is false if the server refuses it (now
// or before) or the command failed; the reply is valid only if ok.
func (s *session) do(ctx context.Context, args ...any) (reply any, ok bool) {
	name := commandName(args)
	if s.optional.refused[name] {
		return nil, false
	}
	reply, err := s.client.Do(ctx, args...).Result()
	if err != nil {
		if isCommandRefused(err) {
			if s.optional.refused == nil {
				s.optional.refused = make(map[string]bool)
			}
			s.optional.refused[name] = true
		}
		return nil, false
	}
	return reply, true
}

// commandName is the command and, for container commands such as CONFIG
// GET, its subcommand: a server may allow one and not the other.
func commandName(args []any) string {
	var parts []string
	for i, a := range args {
		s, ok := a.(string)
		if !ok || i > 1 {
			break
		}
		parts = append(parts, strings.ToUpper(s))
	}
	return strings.Join(parts, " ")
}

// isCommandRefused tells a disabled, renamed, unknown or forbidden command
// from a transient failure: the former will not change, the latter will.
func isCommandRefused(err error) bool {
	var re goredis.Error
	if !errors.As(err, &re) {
		return false
	}
	msg := re.Error()
	return strings.HasPrefix(msg, "ERR unknown command") || strings.HasPrefix(msg, "ERR unknown subcommand") ||
		strings.HasPrefix(msg, "NOPERM") || strings.Contains(msg, "not allowed") ||
		strings.HasPrefix(msg, "ERR Unknown subcommand")
}
