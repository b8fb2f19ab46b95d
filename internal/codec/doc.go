// Package codec holds the byte formats of what the buffer keeps: one
// sample.Batch as a batch record (batch.go: the encoding; record.go: the
// checksummed header around it), and many batches as a compact segment
// (compact.go, compact_decode.go, compact_decimal.go, bits.go) inside a
// segment record (segrecord.go).
//
// The buffer's store writes and reads both kinds of record; export files
// (package offline) carry batch records as they are. Neither is API, so
// the package is internal: a change to a format needs a new version byte
// in it, and the readers of the old version kept, because files written
// by an older redwire are read after an upgrade.
package codec
