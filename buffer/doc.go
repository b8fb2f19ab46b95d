// Package buffer keeps samples between the moment they are taken and the
// moment a receiver has accepted them: in memory while the receiver keeps
// up, in a bbolt file while it does not.
//
// A Buffer (buffer.go, memory.go) is one endpoint's queue: Append takes a
// scrape; Next leases the oldest batch, Ack removes it, Release gives it
// back; Spill and Resume follow the endpoint going down and coming back;
// Expire, Compact and Rename (maintain.go) are the agent's maintenance.
// Its Store (store*.go, seal.go) is the file: a FIFO of records, sealed
// into compact segments while a backlog grows. EndpointFile (files.go)
// names each endpoint's file, and ReadStore (read.go, snapshot.go) reads
// one without changing it, for the offline tools.
//
// The byte formats of the records are in internal/codec, not here: they
// are not API.
package buffer
