package redis

import (
	"context"
	"net"
	"strings"

	"github.com/redwire/redwire/sample"
)

// replicationLag computes, on a master, how far behind each replica is in
// bytes of the replication stream (redis_exporter only reports the lag in
// seconds since the last ACK, which stays 0 while a replica that receives
// but cannot apply falls behind), and how that compares with the backlog:
// a ratio above 1 means the replica's next reconnect forces a full resync.
//
// Series are labelled by replica address only; the replica's state lives in
// its own gauge, so a state change does not start a new series.
type replicationLag struct{}

func (replicationLag) collect(_ context.Context, s *session, sc *sample.Scrape) {
	info := s.info
	if role, _ := info.Get("replication", "role"); role != "master" {
		return
	}
	masterOffset, ok := parseInfoNumber(get(info, "replication", "master_repl_offset"))
	if !ok {
		return
	}
	backlog, hasBacklog := parseInfoNumber(get(info, "replication", "repl_backlog_size"))
	for _, sec := range info.Sections {
		if sec.Name != "replication" {
			continue
		}
		for _, f := range sec.Fields {
			if !strings.HasPrefix(f.Key, "slave") || !isInfoIndex(f.Key[len("slave"):]) {
				continue
			}
			st := parseSlave(f.Value)
			if st.ip == "" || st.port == "" {
				continue
			}
			replica := validUTF8(net.JoinHostPort(st.ip, st.port))
			sc.Gauge("redis_replica_online", "Whether the replica's state is online (1) or syncing/waiting (0). A redwire extra.",
				boolFloat(st.state == "online"), "replica", replica)
			if !st.offset.ok {
				continue
			}
			lag := max(masterOffset-st.offset.v, 0)
			sc.Gauge("redis_replica_lag_bytes", "master_repl_offset minus the replica's acknowledged offset. A redwire extra.",
				lag, "replica", replica)
			if hasBacklog && backlog > 0 {
				sc.Gauge("redis_replica_lag_backlog_ratio", "Replica lag in bytes over repl_backlog_size; above 1 the replica's next reconnect needs a full resync. A redwire extra.",
					lag/backlog, "replica", replica)
			}
		}
	}
}

func get(info *Info, section, key string) string {
	v, _ := info.Get(section, key)
	return v
}
