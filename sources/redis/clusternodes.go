package redis

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"strconv"
	"strings"
)

// ClusterNode is one line of a CLUSTER NODES reply: a node as the
// answering node sees it. Cluster discovery turns the nodes into targets,
// and the cluster collector reads the slot count of the `myself` line.
type ClusterNode struct {
	// ID is the node's 40-character name, stable across restarts and
	// address changes.
	ID string
	// Addr is host:port for clients (IPv6 hosts bracketed). It is empty
	// when the node has no address (noaddr, port 0); on the myself line of
	// a node that has not learnt its own IP yet it is ":port".
	Addr string
	// BusPort is the cluster bus port; 0 when the reply does not say
	// (Redis 3 printed no @cport).
	BusPort int
	// Hostname is what the node announces with cluster-announce-hostname
	// (Redis 7+); empty when it announces none.
	Hostname string
	// Flags are the raw flags in reply order: myself, master, slave,
	// fail?, fail, handshake, noaddr, nofailover, noflags, and whatever
	// later releases add.
	Flags []string
	// Myself marks the node that produced the reply.
	Myself bool
	// Master and Replica are the node's role; a node in handshake may have
	// neither yet.
	Master  bool
	Replica bool
	// MasterID is the ID of the master a replica follows; empty for a
	// master ("-").
	MasterID string
	// Failed is the fail flag: a majority of masters agreed the node is
	// unreachable. A suspicion of one node (fail?) does not set it.
	Failed bool
	// LinkConnected reports whether the answering node's bus link to this
	// node is up.
	LinkConnected bool
	// Slots is how many hash slots the node owns. Slots being imported or
	// migrated ([93->-id], [93-<-id]) are listed on top of their owner and
	// do not count; a slot listed twice counts once.
	Slots int
}

// HasFlag reports whether the node carries flag, e.g. "handshake".
func (n ClusterNode) HasFlag(flag string) bool {
	for _, f := range n.Flags {
		if f == flag {
			return true
		}
	}
	return false
}

// ParseClusterNodes reads a CLUSTER NODES reply, one node per line:
//
//	<id> <ip:port@cport[,hostname]> <flags> <master> <ping-sent> <pong-recv> <config-epoch> <link-state> <slot>...
//
// Redis 3's address without @cport is accepted, and so are the aux fields
// (",shard-id=…") that nodes.conf adds after the hostname. Fields are
// checked, not trusted: a malformed line is an error naming its line
// number, and no node is returned, since a partial view of a cluster would
// drop the nodes it misses. Empty lines are skipped.
func ParseClusterNodes(text string) ([]ClusterNode, error) {
	var nodes []ClusterNode
	n := 0
	for line := range strings.Lines(text) {
		n++
		line = strings.TrimRight(line, "\r\n")
		if strings.TrimSpace(line) == "" {
			continue
		}
		node, err := parseClusterNode(line)
		if err != nil {
			return nil, fmt.Errorf("CLUSTER NODES line %d: %w", n, err)
		}
		nodes = append(nodes, node)
	}
	return nodes, nil
}

// parseClusterNode reads one non-empty line.
func parseClusterNode(line string) (ClusterNode, error) {
	f := strings.Fields(line)
	if len(f) < 8 {
		return ClusterNode{}, fmt.Errorf("%d fields, want at least 8 (id, address, flags, master, ping-sent, pong-recv, config-epoch, link-state)", len(f))
	}
	node := ClusterNode{ID: f[0], Flags: strings.Split(f[2], ","), LinkConnected: f[7] == "connected"}
	if err := node.parseAddr(f[1]); err != nil {
		return ClusterNode{}, fmt.Errorf("address %q: %w", f[1], err)
	}
	for _, fl := range node.Flags {
		switch fl {
		case "myself":
			node.Myself = true
		case "master":
			node.Master = true
		case "slave", "replica":
			node.Replica = true
		case "fail":
			node.Failed = true
		case "":
			return ClusterNode{}, fmt.Errorf("flags %q: empty flag", f[2])
		}
	}
	if f[3] != "-" {
		node.MasterID = f[3]
	}
	for i, name := range []string{"ping-sent", "pong-recv", "config-epoch"} {
		if _, err := strconv.ParseUint(f[4+i], 10, 64); err != nil {
			return ClusterNode{}, fmt.Errorf("%s %q: not a number", name, f[4+i])
		}
	}
	if f[7] != "connected" && f[7] != "disconnected" {
		return ClusterNode{}, fmt.Errorf("link-state %q: want connected or disconnected", f[7])
	}
	slots, err := countSlots(f[8:])
	if err != nil {
		return ClusterNode{}, err
	}
	node.Slots = slots
	return node, nil
}

// parseAddr reads ip:port[@cport][,hostname[,aux=value…]]. The host is
// everything before the last colon: Redis prints IPv6 addresses without
// brackets.
func (n *ClusterNode) parseAddr(s string) error {
	s, extra, _ := strings.Cut(s, ",")
	if hostname, _, _ := strings.Cut(extra, ","); !strings.Contains(hostname, "=") {
		n.Hostname = hostname
	}
	s, cport, hasBus := strings.Cut(s, "@")
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return errors.New("no port")
	}
	host, port := s[:i], s[i+1:]
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return fmt.Errorf("bad port %q", port)
	}
	if hasBus {
		b, err := strconv.ParseUint(cport, 10, 16)
		if err != nil {
			return fmt.Errorf("bad bus port %q", cport)
		}
		n.BusPort = int(b)
	}
	if p == 0 {
		return nil
	}
	if h, ok := strings.CutPrefix(host, "["); ok {
		host, _ = strings.CutSuffix(h, "]")
	}
	n.Addr = net.JoinHostPort(host, strconv.Itoa(int(p)))
	// Callers split Addr again; a host that does not survive that (a
	// stray bracket) is garbage, not an address.
	if _, _, err := net.SplitHostPort(n.Addr); err != nil {
		return fmt.Errorf("bad host %q", host)
	}
	return nil
}

// countSlots counts the slot entries of a line: "N" or "N-M" owned,
// "[…]" an import or migration in progress, which does not count.
func countSlots(entries []string) (int, error) {
	var owned [clusterSlots / 64]uint64
	for _, e := range entries {
		if strings.HasPrefix(e, "[") {
			if !isSlotMove(e) {
				return 0, fmt.Errorf("slot entry %q: want [slot->-id] or [slot-<-id]", e)
			}
			continue
		}
		lo, hi, ok := slotRange(e)
		if !ok {
			return 0, fmt.Errorf("slot entry %q: want N or N-M with 0 <= N <= M < %d", e, clusterSlots)
		}
		for s := lo; s <= hi; s++ {
			owned[s/64] |= 1 << (s % 64)
		}
	}
	n := 0
	for _, w := range owned {
		n += bits.OnesCount64(w)
	}
	return n, nil
}

// isSlotMove reports whether e is [slot->-id] (migrating) or [slot-<-id]
// (importing).
func isSlotMove(e string) bool {
	inner, ok := strings.CutPrefix(e, "[")
	if !ok {
		return false
	}
	if inner, ok = strings.CutSuffix(inner, "]"); !ok {
		return false
	}
	slot, id, found := strings.Cut(inner, "->-")
	if !found {
		slot, id, found = strings.Cut(inner, "-<-")
	}
	lo, hi, isSlot := slotRange(slot)
	return found && isSlot && lo == hi && id != ""
}

// slotRange reads "N" or "N-M" with 0 <= N <= M < 16384.
func slotRange(e string) (lo, hi int, ok bool) {
	a, b, isRange := strings.Cut(e, "-")
	lo, err := strconv.Atoi(a)
	if err != nil {
		return 0, 0, false
	}
	hi = lo
	if isRange {
		if hi, err = strconv.Atoi(b); err != nil {
			return 0, 0, false
		}
	}
	if lo < 0 || hi < lo || hi >= clusterSlots {
		return 0, 0, false
	}
	return lo, hi, true
}

// ClusterNodes asks the server cfg points at for CLUSTER NODES over a
// connection set up exactly as a Target's (credentials, password_file
// re-read, TLS files re-read, RESP2, no retries: ctx bounds the attempt),
// and parses the reply. The connection is closed before it returns: the
// question is asked once per refresh, not once per scrape.
//
// A node that has not learnt its own IP yet lists itself as ":port"; the
// host it was reached at is filled in, since that is where it answers.
func ClusterNodes(ctx context.Context, cfg TargetConfig) ([]ClusterNode, error) {
	t, err := NewTarget(cfg, nil)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	text, err := t.client.Do(ctx, "CLUSTER", "NODES").Text()
	if err != nil {
		return nil, fmt.Errorf("%s: CLUSTER NODES: %w", t.Name(), err)
	}
	nodes, err := ParseClusterNodes(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.Name(), err)
	}
	ep, _ := cfg.endpoint() // NewTarget validated it
	host, _, _ := net.SplitHostPort(ep.addr)
	for i := range nodes {
		if nodes[i].Myself && strings.HasPrefix(nodes[i].Addr, ":") && ep.network == "tcp" {
			nodes[i].Addr = net.JoinHostPort(host, nodes[i].Addr[1:])
		}
	}
	return nodes, nil
}
