package redis

import (
	"context"
	"regexp"
	"strings"

	"github.com/redwire/redwire/sample"
)

// clusterInfo reports CLUSTER INFO on a node that INFO says runs in
// cluster mode, as redis_exporter does: every `cluster_*` field becomes a
// gauge named redis_<field> (two renamed, see clusterInfoNames), with "ok"
// read as 1 and "fail" as 0. Fields are found by key, never by position:
// Redis and Valkey add fields between releases. A numeric field without
// the cluster_ prefix (total_cluster_links_buffer_limit_exceeded, which
// redis_exporter drops) becomes redis_cluster_<field>, so everything this
// collector emits stays under redis_cluster_.
//
// As a redwire extra it reports redis_cluster_node_slots, the slots this
// node owns as a master (CLUSTER NODES, the `myself` line): 0 on a replica,
// so the values of a healthy cluster's nodes add up to 16384, and a
// master that lost its slots after a failover shows at once.
//
// Both commands go through session.do: a managed service that hides
// CLUSTER costs one refused round trip, once.
type clusterInfo struct{}

// clusterInfoNames are the fields redis_exporter renames (its
// metricMapGauges); both stay gauges there despite the _total suffix.
var clusterInfoNames = map[string]string{
	"cluster_stats_messages_sent":     "redis_cluster_messages_sent_total",
	"cluster_stats_messages_received": "redis_cluster_messages_received_total",
}

// clusterSlots is the size of Redis Cluster's key space.
const clusterSlots = 16384

const (
	clusterHelpGeneric = "CLUSTER INFO field of the same name; ok is 1, fail is 0."
	clusterHelpSlots   = "Hash slots this node owns as a master (CLUSTER NODES); 0 on a replica. A redwire extra."
)

var clusterNameRE = regexp.MustCompile(`[^a-zA-Z0-9_]`)

func (clusterInfo) collect(ctx context.Context, s *session, sc *sample.Scrape) {
	if get(s.info, "cluster", "cluster_enabled") != "1" {
		return
	}
	// Invariant: one sample per series per scrape. INFO already emitted
	// redis_cluster_enabled (and Valkey may grow more cluster fields in
	// INFO): a CLUSTER INFO field mapping to a family already in the
	// scrape is left to the first emitter, and a repeated field counts
	// once, else the receiver rejects the whole batch.
	taken := make(map[string]bool, len(sc.Metadata)+32)
	for _, m := range sc.Metadata {
		taken[m.Family] = true
	}
	if reply, ok := s.do(ctx, "CLUSTER", "INFO"); ok {
		if text, isText := reply.(string); isText {
			for _, f := range parseClusterInfo(text) {
				if taken[f.name] {
					continue
				}
				taken[f.name] = true
				sc.Gauge(f.name, clusterHelp(f.name), f.v)
			}
		}
	}
	if reply, ok := s.do(ctx, "CLUSTER", "NODES"); ok && !taken["redis_cluster_node_slots"] {
		if text, isText := reply.(string); isText {
			if n, found := mySlots(text); found {
				sc.Gauge("redis_cluster_node_slots", clusterHelpSlots, float64(n))
			}
		}
	}
}

func clusterHelp(name string) string {
	switch name {
	case "redis_cluster_messages_sent_total":
		return "Cluster bus messages sent (cluster_stats_messages_sent)."
	case "redis_cluster_messages_received_total":
		return "Cluster bus messages received (cluster_stats_messages_received)."
	}
	return clusterHelpGeneric
}

// clusterField is one sample made from a CLUSTER INFO line.
type clusterField struct {
	name string
	v    float64
}

// parseClusterInfo maps CLUSTER INFO's "key:value" lines to samples, in
// the reply's order. Lines that are not key:value, and values that are
// neither a number nor ok/fail, are skipped.
func parseClusterInfo(text string) []clusterField {
	var out []clusterField
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\r\n")
		key, val, found := strings.Cut(line, ":")
		if !found || key == "" || strings.HasPrefix(key, "#") {
			continue
		}
		v, ok := clusterValue(val)
		if !ok {
			continue
		}
		out = append(out, clusterField{name: clusterName(key), v: v})
	}
	return out
}

// clusterName is the family for a CLUSTER INFO key: redis_exporter's
// name for cluster_* keys (redis_ + the key with [^a-zA-Z0-9_] replaced),
// redis_cluster_<key> for the others.
func clusterName(key string) string {
	if name, ok := clusterInfoNames[key]; ok {
		return name
	}
	key = clusterNameRE.ReplaceAllString(key, "_")
	if strings.HasPrefix(key, "cluster_") {
		return "redis_" + key
	}
	return "redis_cluster_" + key
}

// clusterValue reads a value as redis_exporter does: ok and true are 1,
// fail, err and false 0, anything else must be a number.
func clusterValue(s string) (float64, bool) {
	switch s {
	case "ok", "true":
		return 1, true
	case "fail", "err", "false":
		return 0, true
	}
	return parseInfoNumber(s)
}

// mySlots is the slot count of the CLUSTER NODES line flagged myself
// (see ParseClusterNodes for what counts). found is false without a myself
// line, or when the reply does not parse: a wrong count is worse than none.
func mySlots(text string) (n int, found bool) {
	nodes, err := ParseClusterNodes(text)
	if err != nil {
		return 0, false
	}
	for _, node := range nodes {
		if node.Myself {
			return node.Slots, true
		}
	}
	return 0, false
}
