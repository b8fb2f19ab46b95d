// Package discovery finds the Redis targets that are not written out in
// the config: a targets file that operators (or their tooling) rewrite,
// the servers a Sentinel quorum knows for a master name, and the nodes of
// a Redis Cluster. Each source sends its full current set of targets as a
// Group whenever it changes; the agent diffs groups against the scrape
// loops it runs.
package discovery

import (
	"context"

	"github.com/redwire/redwire/sources/redis"
)

// Group is every target one source wants monitored right now. A Group with
// no targets removes all of that source's targets.
type Group struct {
	// Source names where the targets come from ("file:/etc/redwire/t.yml",
	// "sentinel:mymaster", "cluster:prod"); unique per discoverer.
	Source string
	// Targets are identified by their instance (TargetConfig.Instance): a
	// target whose instance stays the same while only its address changes
	// (the logical master of a Sentinel after a failover) is re-pointed,
	// not replaced, so its series and soft-failure state continue.
	Targets []redis.TargetConfig
	// Refresh, if set, asks the source to look again now: the agent calls
	// it when a target of this group fails a scrape, so a cluster that lost
	// a node is re-read without waiting for the next interval. It must not
	// block.
	Refresh func()
}

// Discoverer is a source of targets.
type Discoverer interface {
	// Run sends the source's Group on up at start (once it knows it) and
	// after every change, until ctx is done. It never closes up. Errors
	// (an unreachable sentinel, an unreadable file) are logged and retried
	// by the discoverer itself: a source that fails keeps its last good
	// group rather than dropping targets.
	Run(ctx context.Context, up chan<- Group)
	// Source is the Source of every Group the discoverer sends, known
	// before it sends any: a reload keeps the targets of a source that is
	// still configured until its new discoverer reports.
	Source() string
}
