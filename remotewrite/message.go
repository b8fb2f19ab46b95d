package remotewrite

import "fmt"

// Message is the protobuf message a write request carries, named as
// Prometheus 3 names it in its protobuf_message setting and in the
// request's Content-Type.
type Message string

// The two messages of remote write. MessageV1 is the default: every
// receiver takes it.
const (
	MessageV1 Message = "prometheus.WriteRequest"        // remote write 1.0
	MessageV2 Message = "io.prometheus.write.v2.Request" // remote write 2.0
)

// contentType is the request's Content-Type for m. 1.0 keeps the bare
// type that receivers before 2.0 expect.
func (m Message) contentType() string {
	if m == MessageV2 {
		return "application/x-protobuf;proto=" + string(MessageV2)
	}
	return "application/x-protobuf"
}

// version is the X-Prometheus-Remote-Write-Version header for m.
func (m Message) version() string {
	if m == MessageV2 {
		return "2.0.0"
	}
	return "0.1.0"
}

// validate names the setting if m is neither message.
func (m Message) validate() error {
	switch m {
	case MessageV1, MessageV2:
		return nil
	}
	return fmt.Errorf("protobuf_message %q: must be %s or %s", string(m), MessageV1, MessageV2)
}
