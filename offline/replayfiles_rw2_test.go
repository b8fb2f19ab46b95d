package offline

import (
	"context"
	"testing"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/remotewrite"
)

// TestReplayFilesSpeaksRW2: redwire replay follows the endpoint's
// protobuf_message. A Prometheus 3.x takes 2.0, every request goes as
// 2.0 and no fall back happens (so its answers carried the Written
// headers); a Prometheus 2.42 answers the first 2.0 request without them,
// and the replay falls back to 1.0 with the same samples. Either way
// everything arrives.
func TestReplayFilesSpeaksRW2(t *testing.T) {
	const scrapes, perScrape, maxSend = 6, 20, 40 // 3 requests
	for _, c := range []struct {
		name     string
		version3 bool
		want     remotewrite.Message
	}{{"prometheus3", true, remotewrite.MessageV2}, {"prometheus2", false, remotewrite.MessageV1}} {
		t.Run(c.name, func(t *testing.T) {
			prom := harness.StartPrometheusWith(t, harness.PrometheusOptions{Version3: c.version3})
			proxy := harness.StartProxy(t, prom.URL())
			files, _ := exportFixture(t, "rw2-"+c.name, scrapes, perScrape, 0)
			opts := replayOpts(t, proxy.URL()+"/api/v1/write", maxSend)
			opts.Endpoint.ProtobufMessage = remotewrite.MessageV2
			sum, err := ReplayFiles(context.Background(), files, opts)
			if err != nil {
				t.Fatal(err)
			}
			if sum.Message != c.want || sum.SamplesSent != scrapes*perScrape || len(sum.Dropped) != 0 {
				t.Fatalf("summary %+v; want all %d samples sent, ending as %s", sum, scrapes*perScrape, c.want)
			}
			var versions []string
			for _, r := range proxy.Requests() {
				versions = append(versions, r.Header.Get("X-Prometheus-Remote-Write-Version"))
			}
			want := []string{"2.0.0", "2.0.0", "2.0.0"}
			if !c.version3 {
				want = []string{"2.0.0", "0.1.0", "0.1.0", "0.1.0"} // the first again as 1.0
			}
			if len(versions) != len(want) {
				t.Fatalf("requests as %v, want %v", versions, want)
			}
			for i := range want {
				if versions[i] != want[i] {
					t.Fatalf("requests as %v, want %v", versions, want)
				}
			}
			requireArrived(t, prom, "rw2-"+c.name, scrapes, perScrape)
		})
	}
}
