// Package sample is the data every stage of redwire passes along: sources
// produce it, the agent queues it, the buffer keeps it and remotewrite sends
// it. It sits below all of them so that none has to import another to share
// a type.
package sample

import (
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
)

// Type is a metric family's type as remote write metadata carries it.
type Type = prompb.MetricMetadata_MetricType

// The metric types redwire emits.
const (
	Gauge   = prompb.MetricMetadata_GAUGE
	Counter = prompb.MetricMetadata_COUNTER
	Info    = prompb.MetricMetadata_INFO
)

// Sample is one value of one series at one instant.
type Sample struct {
	// Labels are sorted and include __name__.
	Labels labels.Labels
	// T is the scrape time in milliseconds since the Unix epoch.
	T int64
	V float64
}

// Metadata describes one metric family (TYPE and HELP in exposition terms).
type Metadata struct {
	Family string
	Type   Type
	Help   string
}

// Batch is the unit that is queued, stored and sent: samples in the order
// they were taken plus the metadata of the families they belong to.
type Batch struct {
	Samples  []Sample
	Metadata []Metadata
}

// Len is the number of samples in the batch.
func (b *Batch) Len() int { return len(b.Samples) }
