// Package offline holds the tools that work on a buffer without the
// agent: inspect a buffer directory (inspect.go), export its batches to a
// self-describing, checksummed file (export.go, whose header states the
// format; exportread.go reads it) to carry to a connected host, and
// replay export files to a receiver there (replayfiles.go), under the
// agent's receiver policy (remotewrite.Policy), and write what receivers
// refuse as too old into Prometheus TSDB blocks (backfill.go).
//
// They read buffer files only through buffer.ReadStore, safely while an
// agent runs on them, and remove what they exported only through an
// exclusively opened buffer.Store.
package offline
