package remotewrite

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/alecthomas/units"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
)

// Defaults for an endpoint; the only place these numbers live. They are
// documented in configs/redwire.example.yml.
var (
	DefaultRemoteTimeout   = model.Duration(30 * time.Second)
	DefaultProtobufMessage = MessageV1
	DefaultQueueConfig     = QueueConfig{
		Capacity:          10000,
		MaxSamplesPerSend: 2000,
		BatchSendDeadline: model.Duration(5 * time.Second),
		MinBackoff:        model.Duration(500 * time.Millisecond),
		MaxBackoff:        model.Duration(30 * time.Second),
	}
)

// EndpointConfig is one `remote_write:` entry. HTTPClientConfig is inlined so
// basic_auth, authorization, oauth2, tls_config, proxy_url and friends read
// exactly as in a Prometheus remote_write block.
type EndpointConfig struct {
	URL           *config.URL       `yaml:"url"`
	Name          string            `yaml:"name,omitempty"`
	RemoteTimeout model.Duration    `yaml:"remote_timeout,omitempty"`
	Headers       map[string]string `yaml:"headers,omitempty"`
	QueueConfig   QueueConfig       `yaml:"queue_config,omitempty"`
	// ProtobufMessage is the message requests carry: remote write 1.0
	// (the default) or 2.0, which falls back to 1.0 by itself when the
	// receiver shows it does not take 2.0.
	ProtobufMessage Message `yaml:"protobuf_message,omitempty"`
	// NativeHistograms sends Redis' latency histograms as native
	// histograms (schema 0) instead of classic bucket sets, in remote
	// write 2.0 requests only (see nativehist.go): 1.0 cannot carry them
	// here, and an endpoint that falls back to 1.0 is sent classic ones.
	// Off by default: redis_exporter's dashboards query the classic
	// _bucket series.
	NativeHistograms bool `yaml:"native_histograms,omitempty"`
	// ReplayOrder overrides replay.order for this endpoint: "fifo" or
	// "live_first" (the agent checks and applies it); empty: replay.order.
	ReplayOrder string `yaml:"replay_order,omitempty"`
	// OutOfOrderTimeWindow declares how far behind its newest sample the
	// receiver takes samples, named after Prometheus'
	// storage.tsdb.out_of_order_time_window (Mimir out_of_order_time_window,
	// Thanos --tsdb.out-of-order.time-window). 0, the default, declares
	// none. With a window, samples the receiver refused for their age and
	// redwire parked are sent again once they fall within it, and
	// backlog samples older than it are parked without being sent.
	OutOfOrderTimeWindow model.Duration `yaml:"out_of_order_time_window,omitempty"`
	// MaxBytesPerSecond and MaxBytesPerDay are the link budget of a
	// metered link: request bodies as sent (compressed) at most this
	// many bytes a second and a UTC day; 0, the default: no limit. The
	// backlog is held back first, live data last, and nothing is dropped
	// for it: what waits stays in the buffer (see Budget).
	MaxBytesPerSecond units.Base2Bytes `yaml:"max_bytes_per_second,omitempty"`
	MaxBytesPerDay    units.Base2Bytes `yaml:"max_bytes_per_day,omitempty"`

	HTTPClientConfig config.HTTPClientConfig `yaml:",inline"`
}

// QueueConfig bounds the in-memory queue and shapes requests.
type QueueConfig struct {
	// Capacity is the number of samples held in memory for this endpoint.
	Capacity int `yaml:"capacity,omitempty"`
	// MaxSamplesPerSend caps the samples in one request.
	MaxSamplesPerSend int `yaml:"max_samples_per_send,omitempty"`
	// BatchSendDeadline is how long a partial batch waits before it is sent.
	BatchSendDeadline model.Duration `yaml:"batch_send_deadline,omitempty"`
	// MinBackoff and MaxBackoff bound the retry delay of a failed send.
	MinBackoff model.Duration `yaml:"min_backoff,omitempty"`
	MaxBackoff model.Duration `yaml:"max_backoff,omitempty"`
}

// Headers the protocol owns; a user may not override them.
var reservedHeaders = map[string]bool{
	"Content-Encoding":                  true,
	"Content-Type":                      true,
	"X-Prometheus-Remote-Write-Version": true,
	"User-Agent":                        true,
	"Authorization":                     true,
}

// SetDefaults fills unset fields from the package defaults.
func (c *EndpointConfig) SetDefaults() {
	if c.RemoteTimeout == 0 {
		c.RemoteTimeout = DefaultRemoteTimeout
	}
	if c.ProtobufMessage == "" {
		c.ProtobufMessage = DefaultProtobufMessage
	}
	q, d := &c.QueueConfig, DefaultQueueConfig
	if q.Capacity == 0 {
		q.Capacity = d.Capacity
	}
	if q.MaxSamplesPerSend == 0 {
		q.MaxSamplesPerSend = d.MaxSamplesPerSend
	}
	if q.BatchSendDeadline == 0 {
		q.BatchSendDeadline = d.BatchSendDeadline
	}
	if q.MinBackoff == 0 {
		q.MinBackoff = d.MinBackoff
	}
	if q.MaxBackoff == 0 {
		q.MaxBackoff = d.MaxBackoff
	}
}

// NewEndpointConfig is an endpoint for url with every other setting at its
// default, as `--remote-write.url` creates it.
func NewEndpointConfig(u *url.URL) EndpointConfig {
	c := EndpointConfig{URL: &config.URL{URL: u}, HTTPClientConfig: config.DefaultHTTPClientConfig}
	c.SetDefaults()
	return c
}

// UnmarshalYAML starts from the HTTP client defaults Prometheus uses
// (follow redirects, HTTP/2 allowed), which an inlined struct would
// otherwise miss.
func (c *EndpointConfig) UnmarshalYAML(unmarshal func(any) error) error {
	type plain EndpointConfig
	*c = EndpointConfig{HTTPClientConfig: config.DefaultHTTPClientConfig}
	return unmarshal((*plain)(c))
}

// Validate checks the endpoint and names the field that is wrong.
func (c *EndpointConfig) Validate() error {
	if c.URL == nil || c.URL.URL == nil {
		return errors.New("url: must be set")
	}
	if c.URL.Scheme != "http" && c.URL.Scheme != "https" {
		return fmt.Errorf("url %q: scheme must be http or https", c.URL.Redacted())
	}
	if c.URL.Host == "" {
		return fmt.Errorf("url %q: missing host", c.URL.Redacted())
	}
	if c.RemoteTimeout < 0 {
		return errors.New("remote_timeout: must not be negative")
	}
	if c.OutOfOrderTimeWindow < 0 {
		return errors.New("out_of_order_time_window: must not be negative")
	}
	if c.MaxBytesPerSecond < 0 {
		return errors.New("max_bytes_per_second: must not be negative")
	}
	if c.MaxBytesPerDay < 0 {
		return errors.New("max_bytes_per_day: must not be negative")
	}
	if c.ProtobufMessage != "" {
		if err := c.ProtobufMessage.validate(); err != nil {
			return err
		}
	}
	if c.NativeHistograms && c.ProtobufMessage != MessageV2 {
		m := c.ProtobufMessage
		if m == "" {
			m = DefaultProtobufMessage
		}
		return fmt.Errorf("native_histograms: only meaningful with protobuf_message %s (protobuf_message is %s): remote write 1.0 carries no native histograms here", MessageV2, m)
	}
	for h := range c.Headers {
		if reservedHeaders[http.CanonicalHeaderKey(h)] {
			return fmt.Errorf("headers: %s is set by redwire and cannot be overridden", h)
		}
	}
	q := c.QueueConfig
	switch {
	case q.Capacity < 0:
		return errors.New("queue_config.capacity: must not be negative")
	case q.MaxSamplesPerSend < 0:
		return errors.New("queue_config.max_samples_per_send: must not be negative")
	case q.Capacity > 0 && q.MaxSamplesPerSend > q.Capacity:
		return fmt.Errorf("queue_config.max_samples_per_send (%d) must not exceed queue_config.capacity (%d)", q.MaxSamplesPerSend, q.Capacity)
	case q.MinBackoff < 0 || q.MaxBackoff < 0:
		return errors.New("queue_config.min_backoff/max_backoff: must not be negative")
	case q.MaxBackoff > 0 && q.MinBackoff > q.MaxBackoff:
		return errors.New("queue_config.min_backoff must not exceed queue_config.max_backoff")
	}
	if err := c.HTTPClientConfig.Validate(); err != nil {
		return err
	}
	return nil
}

// Budget is the endpoint's link budget, fresh.
func (c *EndpointConfig) Budget() Budget {
	return Budget{Rate: float64(c.MaxBytesPerSecond), PerDay: int64(c.MaxBytesPerDay)}
}

// SetDirectory makes relative file paths relative to the config file.
func (c *EndpointConfig) SetDirectory(dir string) {
	c.HTTPClientConfig.SetDirectory(dir)
}

// Label is how the endpoint appears in logs and metric labels: its name if
// set, otherwise its URL without credentials.
func (c *EndpointConfig) Label() string {
	if c.Name != "" {
		return c.Name
	}
	if c.URL == nil {
		return ""
	}
	return strings.TrimSuffix(c.URL.Redacted(), "/")
}
