package redis

import (
	"context"

	"github.com/redwire/redwire/sample"
)

// topology counts the events an operator wants to alert on after the
// fact, even when they happened between two scrapes of a dashboard: a role
// change (failover), a restart (the run_id changed) and a new replication
// ID (a master was promoted or its history reset). Counters start at 0
// when the agent starts; the first scrape only records the baseline.
type topology struct {
	seen                       bool
	role, runID, replID        string
	roleChanges, restarts, ids float64
}

func (t *topology) collect(_ context.Context, s *session, sc *sample.Scrape) {
	role := get(s.info, "replication", "role")
	runID := get(s.info, "server", "run_id")
	replID := get(s.info, "replication", "master_replid")
	if t.seen {
		t.roleChanges += changed(t.role, role)
		t.restarts += changed(t.runID, runID)
		t.ids += changed(t.replID, replID)
	}
	t.seen = true
	t.role, t.runID, t.replID = keep(t.role, role), keep(t.runID, runID), keep(t.replID, replID)

	sc.Counter("redis_role_changes_total", "Changes of the role (master/slave) seen by this agent. A redwire extra.", t.roleChanges)
	sc.Counter("redis_restarts_total", "Restarts seen by this agent (run_id changed). A redwire extra.", t.restarts)
	sc.Counter("redis_replid_changes_total", "Changes of master_replid seen by this agent (promotion or history reset). A redwire extra.", t.ids)
}

// changed is 1 if a known value became another known value; a field
// missing from one reply is not a change.
func changed(old, now string) float64 {
	if old != "" && now != "" && old != now {
		return 1
	}
	return 0
}

func keep(old, now string) string {
	if now == "" {
		return old
	}
	return now
}
