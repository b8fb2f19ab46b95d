package remotewrite

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sample"
)

// TestStartTimestampsWithPrometheus3: a real Prometheus 3.x takes a 2.0
// request whose counters carry start timestamps, and says it wrote every
// sample; with created-timestamp-zero-ingestion it also stores a zero at
// the start, before the counter's first sample. Without the feature the
// same request is taken just as well.
func TestStartTimestampsWithPrometheus3(t *testing.T) {
	for _, c := range []struct {
		name     string
		features []string
	}{{"zero-ingestion", []string{harness.FeatureStartTimestampZero}}, {"default", nil}} {
		t.Run(c.name, func(t *testing.T) {
			prom := harness.StartPrometheusWith(t, harness.PrometheusOptions{Version3: true, Features: c.features})
			u, err := url.Parse(prom.WriteURL())
			if err != nil {
				t.Fatal(err)
			}
			cl, err := NewClient(NewEndpointConfig(u), "test")
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now().Truncate(time.Second).UnixMilli()
			const uptime = 30
			b := sample.Batch{Samples: []sample.Sample{
				at("redis_uptime_in_seconds", "r:6379", now, uptime),
				at("redis_commands_processed_total", "r:6379", now, 42),
				at("redis_connected_clients", "r:6379", now, 3),
			}}
			e := &Encoder{msg: MessageV2}
			body, err := e.Encode(&b)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			w, err := cl.SendMessage(ctx, MessageV2, body)
			if err != nil {
				t.Fatal(err)
			}
			if !w.Reported || w.Samples != len(b.Samples) {
				t.Fatalf("Written %+v, want the %d samples reported", w, len(b.Samples))
			}
			start := time.UnixMilli(now - (uptime+1)*1000)
			var got []harness.Point
			harness.WaitFor(t, 30*time.Second, "the counter in Prometheus", func() (bool, error) {
				rs, err := prom.Samples(ctx, `redis_commands_processed_total`, 5*time.Minute)
				if err != nil || len(rs) != 1 {
					return false, err
				}
				got = rs[0].Points
				return true, nil
			})
			want := []harness.Point{{T: time.UnixMilli(now), V: 42}}
			if c.features != nil {
				want = append([]harness.Point{{T: start, V: 0}}, want...)
			}
			if len(got) != len(want) {
				t.Fatalf("samples %v, want %v", got, want)
			}
			for i := range want {
				if !got[i].T.Equal(want[i].T) || got[i].V != want[i].V {
					t.Fatalf("samples %v, want %v", got, want)
				}
			}
		})
	}
}
