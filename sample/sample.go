// Package sample is the data every stage of redwire passes along: sources
// produce it, the agent queues it, the buffer keeps it and remotewrite sends
// it. It sits below all of them so that none has to import another to share
// a type.
package sample

import (
	"strconv"

	"github.com/prometheus/prometheus/model/labels"
)

// Type is a metric family's type as remote write metadata carries it: the
// values of prompb.MetricMetadata_MetricType, kept here so that the agent
// does not link the generated protobuf code (and gogo/protobuf with it)
// for a handful of constants.
type Type int32

// The metric types of remote-write 1.0 metadata.
const (
	Unknown        Type = 0
	Counter        Type = 1
	Gauge          Type = 2
	Histogram      Type = 3
	GaugeHistogram Type = 4
	Summary        Type = 5
	Info           Type = 6
	StateSet       Type = 7
)

var typeNames = [...]string{"UNKNOWN", "COUNTER", "GAUGE", "HISTOGRAM", "GAUGEHISTOGRAM", "SUMMARY", "INFO", "STATESET"}

// String is the type's name as prompb spells it.
func (t Type) String() string {
	if t >= 0 && int(t) < len(typeNames) {
		return typeNames[t]
	}
	return strconv.Itoa(int(t))
}

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
