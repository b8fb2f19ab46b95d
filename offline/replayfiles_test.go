package offline

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/remotewrite"
	"github.com/redwire/redwire/sample"
)

// exportFixture stores batches scrapes of perScrape series (instance
// inst, one scrape every 10s ending a minute ago) and exports them with
// delete into a file split at splitAt scrapes (0: one file).
func exportFixture(t *testing.T, inst string, scrapes, perScrape, splitAt int) (files []string, start time.Time) {
	t.Helper()
	dir := t.TempDir()
	sf := buffer.EndpointFile(dir, "ep")
	store, _, err := buffer.OpenStore(sf.Path, buffer.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now().Add(-time.Minute - time.Duration(scrapes)*10*time.Second).Truncate(time.Second)
	base := labels.FromStrings("instance", inst, "job", "redis")
	for k := range scrapes {
		sc := sample.NewScrape(start.Add(time.Duration(k)*10*time.Second), base)
		for i := range perScrape {
			sc.Gauge("redis_test_series", "test", float64(k), "i", fmt.Sprint(i))
		}
		if _, err := store.Append(sc.Batch()); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	ranges := [][2]int64{{0, 0}}
	if splitAt > 0 {
		split := start.Add(time.Duration(splitAt) * 10 * time.Second).UnixMilli()
		ranges = [][2]int64{{0, split}, {split, 0}}
	}
	for i, r := range ranges {
		out := filepath.Join(t.TempDir(), fmt.Sprintf("part%d.rwexport", i))
		if _, err := Export(context.Background(), out, []buffer.StoreFile{sf}, ExportOptions{FromMs: r[0], ToMs: r[1], Delete: true}); err != nil {
			t.Fatal(err)
		}
		files = append(files, out)
	}
	in, err := InspectStore(sf, buffer.ReadOptions{})
	if err != nil || in.Batches != 0 {
		t.Fatalf("buffer after export --delete: %+v %v", in, err)
	}
	return files, start
}

func replayOpts(t *testing.T, writeURL string, maxSend int) ReplayOptions {
	t.Helper()
	u, err := url.Parse(writeURL)
	if err != nil {
		t.Fatal(err)
	}
	ec := remotewrite.NewEndpointConfig(u)
	ec.QueueConfig.MaxSamplesPerSend = maxSend
	ec.QueueConfig.MinBackoff = model.Duration(10 * time.Millisecond)
	ec.QueueConfig.MaxBackoff = model.Duration(50 * time.Millisecond)
	return ReplayOptions{Endpoint: ec, Version: "test"}
}

// requireArrived: every series holds every scrape in the receiver.
func requireArrived(t *testing.T, prom *harness.Prometheus, inst string, scrapes, perScrape int) {
	t.Helper()
	q := fmt.Sprintf(`count(count_over_time(redis_test_series{instance=%q}[1h]) == %d)`, inst, scrapes)
	vec, err := prom.Query(context.Background(), q)
	if err != nil || len(vec) != 1 || vec[0].Value != float64(perScrape) {
		t.Fatalf("%s: %v %v; want %d series with %d samples each", q, vec, err, perScrape, scrapes)
	}
}

// TestReplayFilesResumes: export → delete → replay into a real
// Prometheus; the receiver turns 401 after three requests, so the replay
// stops with ErrReceiverRefused and its progress saved; the rerun sends
// only the remainder, and every sample arrives.
func TestReplayFilesResumes(t *testing.T) {
	const scrapes, perScrape, maxSend = 20, 50, 100 // 2 scrapes a request: 10 requests
	prom := harness.StartPrometheus(t)
	proxy := harness.StartProxy(t, prom.URL())
	files, _ := exportFixture(t, "resume", scrapes, perScrape, 0)
	progress := files[0] + ".progress"

	opts := replayOpts(t, proxy.URL()+"/api/v1/write", maxSend)
	acks := 0
	opts.Progress = func(ReplayProgress) {
		if acks++; acks == 3 {
			proxy.Fail(-1, http.StatusUnauthorized, nil, "token expired")
		}
	}
	sum, err := ReplayFiles(context.Background(), files, opts)
	if !errors.Is(err, ErrReceiverRefused) || !strings.Contains(err.Error(), progress) {
		t.Fatalf("first run: %v, want ErrReceiverRefused naming %s", err, progress)
	}
	if sum.SamplesSent != 3*maxSend {
		t.Fatalf("first run sent %d samples, want %d", sum.SamplesSent, 3*maxSend)
	}
	st, err := ReadReplayState(progress)
	if err != nil || st.Done || st.Records != 6 || st.SamplesSent != 3*maxSend {
		t.Fatalf("progress after the 401: %+v %v; want 6 records, %d samples", st, err, 3*maxSend)
	}

	proxy.Clear()
	before := len(proxy.Requests())
	opts.Progress = nil
	sum, err = ReplayFiles(context.Background(), files, opts)
	if err != nil {
		t.Fatal(err)
	}
	total := int64(scrapes * perScrape)
	if sum.SamplesSent != total-3*maxSend || sum.SamplesAlreadyDone != 3*maxSend || len(sum.Dropped) != 0 {
		t.Fatalf("second run: %+v; want %d sent, %d already done", sum, total-3*maxSend, 3*maxSend)
	}
	if n := len(proxy.Requests()) - before; n != 7 {
		t.Fatalf("second run made %d requests, want 7", n)
	}
	if st, _ = ReadReplayState(progress); !st.Done || st.SamplesSent != total {
		t.Fatalf("progress after completion: %+v", st)
	}
	requireArrived(t, prom, "resume", scrapes, perScrape)

	before = len(proxy.Requests())
	if sum, err = ReplayFiles(context.Background(), files, opts); err != nil || sum.SamplesSent != 0 || len(proxy.Requests()) != before {
		t.Fatalf("third run of a finished file: %+v %v", sum, err)
	}
}

// TestReplayFilesOldestFirst: files given newest first are pushed oldest
// first; a 400 drops and counts; 5xx is retried.
func TestReplayFilesOldestFirst(t *testing.T) {
	const scrapes, perScrape = 8, 10
	prom := harness.StartPrometheus(t)
	proxy := harness.StartProxy(t, prom.URL())
	files, _ := exportFixture(t, "order", scrapes, perScrape, 5)
	proxy.Fail(2, http.StatusServiceUnavailable, nil, "busy")
	sum, err := ReplayFiles(context.Background(), []string{files[1], files[0]}, replayOpts(t, proxy.URL()+"/api/v1/write", 1000))
	if err != nil {
		t.Fatal(err)
	}
	if sum.SamplesSent != scrapes*perScrape || sum.Retries != 2 || sum.Files[0].Path != files[0] {
		t.Fatalf("summary %+v", sum)
	}
	// One request per file: every sample of the second request is newer
	// than every sample of the first.
	var got [][2]int64 // min, max timestamp of each forwarded request
	for _, r := range proxy.Requests() {
		if !r.Forwarded {
			continue
		}
		mm := [2]int64{1<<63 - 1, -1 << 63}
		for _, ts := range r.Write.Timeseries {
			for _, s := range ts.Samples {
				mm[0], mm[1] = min(mm[0], s.Timestamp), max(mm[1], s.Timestamp)
			}
		}
		got = append(got, mm)
	}
	if len(got) != 2 || got[1][0] <= got[0][1] {
		t.Fatalf("forwarded requests' time ranges %v: want 2, oldest first", got)
	}
	requireArrived(t, prom, "order", scrapes, perScrape)

	files, _ = exportFixture(t, "rejected", 4, perScrape, 0)
	proxy.Fail(1, http.StatusBadRequest, nil, "out of order")
	sum, err = ReplayFiles(context.Background(), files, replayOpts(t, proxy.URL()+"/api/v1/write", 2*perScrape))
	if err != nil || sum.Dropped["http_400"] != 2*perScrape || sum.SamplesSent != 2*perScrape {
		t.Fatalf("400: %+v %v", sum, err)
	}
}

// TestReplayFilesRefusesCorrupt: a flipped byte is reported with its
// offset and nothing is sent; SkipCorrupt sends the rest.
func TestReplayFilesRefusesCorrupt(t *testing.T) {
	prom := harness.StartPrometheus(t)
	proxy := harness.StartProxy(t, prom.URL())
	files, _ := exportFixture(t, "corrupt", 5, 10, 0)
	f, fh, err := ReadExportFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var second ExportRecord
	n := 0
	f.Records(f.Start(), func(r ExportRecord) error {
		if n++; n == 2 {
			second = r
		}
		return nil
	}, nil)
	fh.Close()
	raw, _ := os.ReadFile(files[0])
	raw[second.Offset+30] ^= 0xff
	if err := os.WriteFile(files[0], raw, 0o600); err != nil {
		t.Fatal(err)
	}
	opts := replayOpts(t, proxy.URL()+"/api/v1/write", 1000)
	_, err = ReplayFiles(context.Background(), files, opts)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("offset %d", second.Offset)) {
		t.Fatalf("corrupt file: %v, want the offset %d named", err, second.Offset)
	}
	if len(proxy.Requests()) != 0 {
		t.Fatalf("%d requests sent from a refused file", len(proxy.Requests()))
	}
	opts.SkipCorrupt = true
	sum, err := ReplayFiles(context.Background(), files, opts)
	if err != nil || sum.SamplesSent != 40 || sum.CorruptRecords < 1 {
		t.Fatalf("--skip-corrupt: %+v %v", sum, err)
	}
}

// TestReplayFiles413ThenFailureSendsOnlyTheRest: the receiver finds a
// request of several scrapes too large (413), takes the first half and
// fails the second (503). The retry carries the second half only: sent
// again whole, the first half's samples would be older than what the
// receiver now holds for their series, and Prometheus refuses such a
// request whole (400), the half it never had with it.
func TestReplayFiles413ThenFailureSendsOnlyTheRest(t *testing.T) {
	const scrapes, perScrape = 10, 10
	prom := harness.StartPrometheus(t)
	proxy := harness.StartProxy(t, prom.URL())
	files, _ := exportFixture(t, "split", scrapes, perScrape, 0)
	proxy.Fail(1, http.StatusRequestEntityTooLarge, nil, "too large")
	proxy.Pass(1)
	proxy.Fail(1, http.StatusServiceUnavailable, nil, "try later")

	sum, err := ReplayFiles(context.Background(), files, replayOpts(t, proxy.URL()+"/api/v1/write", scrapes*perScrape))
	if err != nil {
		t.Fatal(err)
	}
	reqs := proxy.Requests()
	if len(reqs) != 4 {
		t.Fatalf("%d requests, want 4: the 413, the first half, the second half failing, its retry", len(reqs))
	}
	for i, want := range []int{http.StatusRequestEntityTooLarge, http.StatusNoContent, http.StatusServiceUnavailable, http.StatusNoContent} {
		if got := reqs[i].Status; got/100 != want/100 || (want/100 != 2 && got != want) {
			t.Fatalf("request %d answered %d (forwarded %v, err %v), want %d", i, got, reqs[i].Forwarded, reqs[i].Err, want)
		}
	}
	count := func(r harness.Request) (n int) {
		for _, ts := range r.Write.Timeseries {
			n += len(ts.Samples)
		}
		return n
	}
	if n := count(reqs[0]); n != scrapes*perScrape {
		t.Fatalf("the 413'd request holds %d samples, want the whole file's %d", n, scrapes*perScrape)
	}
	if first, second, retry := count(reqs[1]), count(reqs[2]), count(reqs[3]); first+second != scrapes*perScrape || retry != second {
		t.Fatalf("halves of %d and %d samples, retry of %d: want the retry to carry exactly the failed second half", first, second, retry)
	}
	if sum.SamplesSent != scrapes*perScrape || len(sum.Dropped) != 0 {
		t.Fatalf("summary %+v: want every sample sent, none dropped", sum)
	}
	requireArrived(t, prom, "split", scrapes, perScrape)
}

// TestReplayFilesParksWhatIsRefusedForItsAge: another site moved a real
// Prometheus' head an hour and ten minutes past now, so it refuses every
// sample of the export file as out of bounds. The replay parks them all
// (none dropped), and redwire backfill finds every one in the parked
// area.
func TestReplayFilesParksWhatIsRefusedForItsAge(t *testing.T) {
	const scrapes, perScrape = 12, 10
	prom := harness.StartPrometheus(t)
	ahead := sample.NewScrape(time.Now().Add(time.Hour+10*time.Minute), labels.FromStrings("site", "b"))
	ahead.Gauge("other_site_up", "up", 1)
	var enc remotewrite.Encoder
	b := ahead.Batch()
	body, err := enc.Encode(&b)
	if err != nil {
		t.Fatal(err)
	}
	opts := replayOpts(t, prom.WriteURL(), 50)
	client, err := remotewrite.NewClient(opts.Endpoint, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Send(context.Background(), body); err != nil {
		t.Fatalf("the other site's sample: %v", err)
	}

	files, _ := exportFixture(t, "parked", scrapes, perScrape, 0)
	opts.ParkedDir = t.TempDir()
	sum, err := ReplayFiles(context.Background(), files, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Dropped) != 0 || sum.SamplesSent != 0 || sum.Parked != scrapes*perScrape {
		t.Fatalf("replay: sent %d, parked %d, dropped %v; want all %d parked", sum.SamplesSent, sum.Parked, sum.Dropped, scrapes*perScrape)
	}
	if sum.Requests > 2*scrapes*perScrape/50+2 {
		t.Errorf("%d requests to find that %d samples are all too old", sum.Requests, scrapes*perScrape)
	}
	bf, err := Backfill(context.Background(), BackfillOptions{Output: t.TempDir(),
		Stores: []buffer.StoreFile{buffer.EndpointFile(opts.ParkedDir, ParkedFile)}})
	if err != nil {
		t.Fatal(err)
	}
	if bf.Samples != scrapes*perScrape {
		t.Errorf("backfill of the parked area wrote %d samples, want %d", bf.Samples, scrapes*perScrape)
	}
}
