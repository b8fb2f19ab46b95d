package discovery

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// clusterMetrics are the vectors shared by every cluster on a registry.
// The error counter of a cluster exists from the start (rates need the
// zero); the node counts and the timestamp only once there is a reply.
type clusterMetrics struct {
	nodes       *prometheus.GaugeVec // cluster, role
	errors      prometheus.Counter
	lastSuccess *prometheus.GaugeVec // cluster
}

// newClusterMetrics registers the vectors on reg, or reuses the ones an
// earlier cluster registered there. A nil reg registers nothing.
func newClusterMetrics(reg prometheus.Registerer, name string) (clusterMetrics, error) {
	nodes := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "redwire_cluster_nodes",
		Help: "Nodes of the cluster by role in the last CLUSTER NODES reply accepted, failed ones included, nodes in handshake not.",
	}, []string{"cluster", "role"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "redwire_cluster_discovery_errors_total",
		Help: "Discovery rounds in which no seed or known node of the cluster answered CLUSTER NODES usably.",
	}, []string{"cluster"})
	last := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "redwire_cluster_last_discovery_success_timestamp_seconds",
		Help: "Unix time of the last CLUSTER NODES reply accepted for the cluster.",
	}, []string{"cluster"})
	var err error
	if reg != nil {
		if nodes, err = registerShared(reg, nodes); err != nil {
			return clusterMetrics{}, err
		}
		if errs, err = registerShared(reg, errs); err != nil {
			return clusterMetrics{}, err
		}
		if last, err = registerShared(reg, last); err != nil {
			return clusterMetrics{}, err
		}
	}
	return clusterMetrics{
		nodes:       nodes,
		errors:      errs.WithLabelValues(name),
		lastSuccess: last,
	}, nil
}

// registerShared registers c on reg, or returns the equal collector already
// there.
func registerShared[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}
