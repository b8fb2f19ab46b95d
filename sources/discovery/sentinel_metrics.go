package discovery

import "github.com/prometheus/client_golang/prometheus"

// SentinelMetrics are what Sentinel discoverers report about themselves.
// One set serves every sentinels entry; create it once per registry.
type SentinelMetrics struct {
	failovers   *prometheus.CounterVec
	addressInfo *prometheus.GaugeVec
	up          *prometheus.GaugeVec
}

// NewSentinelMetrics registers the Sentinel discovery metrics on reg.
func NewSentinelMetrics(reg prometheus.Registerer) *SentinelMetrics {
	m := &SentinelMetrics{
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "redwire_sentinel_failovers_total",
			Help: "Times the master of this name moved to another address, as seen by this agent.",
		}, []string{"master_name"}),
		addressInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "redwire_sentinel_master_address_info",
			Help: "Where the sentinels say the master of this name is now (1 for the current address).",
		}, []string{"master_name", "address"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "redwire_sentinel_discovery_up",
			Help: "Whether the last attempt to resolve the master through its sentinels succeeded.",
		}, []string{"master_name"}),
	}
	reg.MustRegister(m.failovers, m.addressInfo, m.up)
	return m
}
