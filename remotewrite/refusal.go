package remotewrite

import (
	"errors"
	"net/http"
	"strings"
)

// Cause is why a receiver refused samples for good (class Reject), read
// from its answer. The agent acts on it: a sample refused for its age is
// parked, not thrown away, since a receiver with a wider window (or the
// same one after an operator widens it) may still take it; the other
// causes are dropped and counted.
type Cause int

const (
	// CauseUnknown: an answer redwire cannot read, or no refusal at all.
	CauseUnknown Cause = iota
	// CauseAge: older than the receiver takes, for the whole receiver
	// (out of bounds, too old, too far in the past) or for its series
	// (out of order).
	CauseAge
	// CauseDuplicate: another value at the same timestamp of the series
	// is already stored.
	CauseDuplicate
	// CauseLimits: a per-tenant or per-series limit of the receiver
	// (series count, label count or length).
	CauseLimits
	// CauseMalformed: the request or a series in it is not valid (labels,
	// metric name, a body that does not decode).
	CauseMalformed
)

func (c Cause) String() string {
	switch c {
	case CauseAge:
		return "age"
	case CauseDuplicate:
		return "duplicate"
	case CauseLimits:
		return "limits"
	case CauseMalformed:
		return "malformed"
	}
	return "unknown"
}

// The phrases of each cause, lower case, as the receivers write them:
//
//   - Prometheus: storage/interface.go (ErrOutOfOrderSample "out of order
//     sample", ErrOutOfBounds "out of bounds", ErrTooOldSample "too old
//     sample", ErrDuplicateSampleForTimestamp "duplicate sample for
//     timestamp") and storage/remote/write_handler.go ("invalid metric
//     name or labels", "invalid labels for series").
//   - Mimir: pkg/util/globalerror/user.go gives each refusal an ID,
//     written "(err-mimir-ID)"; pkg/ingester/errors.go and
//     pkg/distributor/validate.go the sentences around it.
//   - Thanos Receive: pkg/receive/writer.go wraps the Prometheus errors as
//     "add N samples: out of bounds", and pkg/store/labelpb's label errors.
//   - VictoriaMetrics: "cannot parse", "cannot unmarshal".
//
// The first cause with a phrase in the body wins, and age comes first:
// a receiver that kept the rest of a request may refuse several causes at
// once (Thanos joins them), and a sample wrongly parked costs a retry,
// while a sample wrongly dropped is lost.
var causePhrases = []struct {
	cause   Cause
	phrases []string
}{
	{CauseAge, append(cutoffPhrases,
		"out of order sample",                   // Prometheus, Thanos
		"err-mimir-sample-out-of-order",         // Mimir
		"out-of-order samples are not allowed"), // Mimir, without its ID
	},
	{CauseDuplicate, []string{
		"duplicate sample for timestamp",       // Prometheus, Thanos
		"err-mimir-sample-duplicate-timestamp", // Mimir
	}},
	{CauseLimits, []string{
		"err-mimir-max-series-per-user",
		"err-mimir-max-series-per-metric",
		"err-mimir-max-label-names-per-series",
		"err-mimir-max-label-names-per-info-series",
		"err-mimir-label-name-too-long",
		"err-mimir-label-value-too-long",
		"err-mimir-max-native-histogram-buckets",
		"err-mimir-not-reducible-native-histogram",
		"err-mimir-max-metadata-per-user",
		"err-mimir-max-metadata-per-metric",
		"err-mimir-metric-name-too-long",
		"err-mimir-unit-too-long",
		"err-mimir-max-active-series",
		"err-mimir-distributor-max-write-message-size",
		"err-mimir-distributor-max-write-request-data-item-size",
		"per-user series limit",
		"per-metric series limit",
	}},
	{CauseMalformed, []string{
		"err-mimir-missing-metric-name",
		"err-mimir-metric-name-invalid",
		"err-mimir-label-invalid",
		"err-mimir-label-value-invalid",
		"err-mimir-duplicate-label-names",
		"err-mimir-labels-not-sorted",
		"err-mimir-invalid-native-histogram-schema",
		"invalid metric name",   // Prometheus 2.x/3.x
		"invalid labels",        // Prometheus 3.x
		"invalid label",         // several
		"empty label",           // several
		"label with empty name", // Thanos
		"duplicate label",       // Thanos, Prometheus
		"out of order labels",   // Thanos
		"snappy",                // a body that does not decompress
		"unmarshal",             // nor decode
		"proto:",                // golang/protobuf's errors
		"cannot parse",          // VictoriaMetrics
		"cannot decode",         // several
	}},
}

// cutoffPhrases are the refusals of a sample older than a time the whole
// receiver keeps to (its head's lowest valid time, an out-of-order
// window, a grace period), whatever its series: every sample older is
// refused too, which is what lets the policy answer a backlog's old part
// without sending it sample by sample.
var cutoffPhrases = []string{
	"out of bounds",                      // Prometheus, Thanos: below the head's lowest valid time
	"too old sample",                     // Prometheus 3.x: beyond its out-of-order window
	"err-mimir-sample-timestamp-too-old", // Mimir's out of bounds
	"err-mimir-too-far-in-past",          // Mimir: past_grace_period
	"timestamp is too far in the past",
}

// futurePhrases are refusals of a sample too far ahead of the receiver's
// clock. Prometheus 3.x words one "out of bounds: timestamp is too far in
// the future"; it is no sign of age, so the phrase is cut from the body
// before the causes are read.
var futurePhrases = []string{
	"out of bounds: timestamp is too far in the future",
}

// refusalBody is err's body, lower case and without the future phrases,
// if err is a refusal; ok false otherwise.
func refusalBody(err error) (body string, ok bool) {
	var e *Error
	if !errors.As(err, &e) || e.Class != Reject {
		return "", false
	}
	body = strings.ToLower(e.Body)
	if e.Err != nil {
		body += " " + strings.ToLower(e.Err.Error())
	}
	for _, p := range futurePhrases {
		body = strings.ReplaceAll(body, p, "too far in the future")
	}
	return body, true
}

// CauseOf reads why err refused its samples from the receiver's answer
// (*Error's Body). An error that is not a refusal (class Reject) has
// CauseUnknown, and so has a refusal in words redwire does not know.
func CauseOf(err error) Cause {
	body, ok := refusalBody(err)
	if !ok {
		return CauseUnknown
	}
	for _, c := range causePhrases {
		if containsAny(body, c.phrases) {
			return c.cause
		}
	}
	return CauseUnknown
}

// pastCutoff reports whether err refuses samples for being older than a
// time the whole receiver keeps to (see cutoffPhrases): if one sample at
// T is refused so, so is every sample at T or before, of any series.
func pastCutoff(err error) bool {
	body, ok := refusalBody(err)
	return ok && containsAny(body, cutoffPhrases)
}

// RolledBack reports whether the receiver that refused a request with
// err stored none of it, so that the samples it did not object to can be
// sent again on their own and be taken.
//
// Prometheus (2.x and 3.x) answering remote write 1.0 appends a request
// in one transaction and rolls it back at the first sample it refuses
// (storage/remote/write_handler.go); a body that does not decode
// (VictoriaMetrics' "cannot parse", a corrupt snappy block) stored
// nothing either. Mimir's ingesters (400 with an err-mimir- ID) and
// Thanos Receive (409) append what they can and keep it, and a remote
// write 2.0 receiver says what it kept in the Written headers: sending
// those samples again gains nothing. A refusal in words redwire does not
// know counts as kept, as it did before redwire told them apart.
func RolledBack(err error) bool {
	body, ok := refusalBody(err)
	if !ok {
		return false
	}
	var e *Error
	errors.As(err, &e)
	switch {
	case e.Written != nil, e.StatusCode == http.StatusConflict,
		strings.Contains(body, "err-mimir-"),
		strings.Contains(body, "writing locally"), strings.Contains(body, "forwarding request"): // Thanos
		return false
	}
	return containsAny(body, rollbackPhrases)
}

// rollbackPhrases are the answers of receivers that store nothing of a
// request they refuse.
var rollbackPhrases = []string{
	// Prometheus' write handler, which rolls back at the first error.
	"out of bounds", "out of order sample", "too old sample", "duplicate sample for timestamp",
	"invalid metric name", "invalid labels", "duplicate label",
	// A body the receiver could not read at all.
	"snappy", "unmarshal", "proto:", "cannot parse", "cannot decode",
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
