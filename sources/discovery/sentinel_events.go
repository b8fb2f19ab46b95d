package discovery

import (
	"context"
	"slices"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/redwire/redwire/internal/pause"
)

// sentinelEvents are the Pub/Sub channels a sentinel announces topology
// changes on. +switch-master carries the new address, so the agent
// re-points the logical master without a round trip; the others only say
// "look again".
var sentinelEvents = []string{"+switch-master", "+sdown", "-sdown", "+odown", "+failover-end"}

// subscribe listens to one sentinel's events until ctx is done,
// re-subscribing with backoff when the connection drops.
func (s *Sentinel) subscribe(ctx context.Context, host string) {
	c := goredis.NewClient(s.options(host))
	defer c.Close()
	bo := newBackoff()
	for ctx.Err() == nil {
		ps := c.Subscribe(ctx, sentinelEvents...)
		// Receive confirms the subscription (or fails to connect).
		if _, err := ps.Receive(ctx); err != nil {
			ps.Close()
			if !pause.For(ctx, bo.NextBackOff()) {
				return
			}
			continue
		}
		bo.Reset()
		s.log.Debug("subscribed to sentinel events", "sentinel", host)
		// A blocked read ignores ctx; closing the subscription ends it.
		stop := context.AfterFunc(ctx, func() { ps.Close() })
		for {
			msg, err := ps.ReceiveMessage(ctx)
			if err != nil {
				break
			}
			s.event(host, msg.Channel, msg.Payload)
		}
		stop()
		ps.Close()
	}
}

// event handles one announcement. +switch-master's payload is
// "<name> <old ip> <old port> <new ip> <new port>"; the instance events'
// is "<type> <name> <ip> <port> @ <master name> <master ip> <master port>"
// (or "master <name> <ip> <port>" for the master itself).
func (s *Sentinel) event(from, channel, payload string) {
	switch channel {
	case "+switch-master":
		addr, ok := switchMasterAddr(payload, s.cfg.MasterName)
		if !ok {
			return
		}
		s.log.Info("+switch-master received", "sentinel", from, "to", addr)
		// The newest announcement wins: drop a stale nudge first.
		select {
		case <-s.nudge:
		default:
		}
		select {
		case s.nudge <- addr:
		default:
		}
	default:
		if !slices.Contains(strings.Fields(payload), s.cfg.MasterName) {
			return
		}
		s.log.Debug("sentinel event", "sentinel", from, "event", channel, "payload", payload)
		s.Refresh()
	}
}
