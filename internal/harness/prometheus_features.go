package harness

import "strings"

// FeatureStartTimestampZero is the Prometheus 3.x feature that stores a
// zero sample at a remote-written sample's start timestamp (its
// "created timestamp"), when that is before the series' newest sample.
const FeatureStartTimestampZero = "created-timestamp-zero-ingestion"

// featureArgs is the --enable-feature flag of o.Features, if any.
func (o PrometheusOptions) featureArgs() []string {
	if len(o.Features) == 0 {
		return nil
	}
	return []string{"--enable-feature=" + strings.Join(o.Features, ",")}
}
