package offline

import (
	"context"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/harness"
)

// TestBackfillBlocksUploadToAThanosBucketAndServeEverySample does what
// README's "Backfilling parked samples" tells a Thanos user to: it writes
// a parked backlog from days ago into blocks, uploads them with the real
// `thanos tools bucket upload-blocks --path --objstore.config-file
// --label`, finds every block in the bucket (`tools bucket ls`) with the
// external label in its meta.json, and then has a Thanos Store on that
// bucket, read through Thanos Query, serve every sample back with its
// timestamp, its value and the external label.
func TestBackfillBlocksUploadToAThanosBucketAndServeEverySample(t *testing.T) {
	bl := newBacklog(daysAgo())
	sf := bl.store(t, t.TempDir(), "thanos")
	out := filepath.Join(t.TempDir(), "blocks")
	sum := backfillT(t, BackfillOptions{Output: out, Stores: []buffer.StoreFile{sf}, All: true})
	checkSummary(t, bl, sum)

	bucket := harness.NewThanosBucket(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := bucket.Tool(ctx, "upload-blocks", "--path="+out, `--label=cluster="eu-1"`); err != nil {
		t.Fatal(err)
	}
	ls, err := bucket.Tool(ctx, "ls")
	if err != nil {
		t.Fatal(err)
	}
	var wrote []string
	for _, b := range sum.Blocks {
		wrote = append(wrote, b.ULID)
	}
	listed := strings.Fields(ls)
	slices.Sort(wrote)
	slices.Sort(listed)
	if !slices.Equal(listed, wrote) {
		t.Fatalf("tools bucket ls lists %v; wrote %v", listed, wrote)
	}
	for _, b := range sum.Blocks {
		m, err := bucket.Meta(b.ULID)
		if err != nil {
			t.Errorf("block %s in the bucket: %v", b.ULID, err)
			continue
		}
		if len(m.Thanos.Labels) != 1 || m.Thanos.Labels["cluster"] != "eu-1" {
			t.Errorf("block %s: thanos.labels %v, want cluster=eu-1 only", b.ULID, m.Thanos.Labels)
		}
		if m.MinTime != b.MinT || m.MaxTime != b.MaxT || m.Stats.NumSamples != b.Samples {
			t.Errorf("block %s in the bucket: [%d, %d) with %d samples; wrote [%d, %d) with %d",
				b.ULID, m.MinTime, m.MaxTime, m.Stats.NumSamples, b.MinT, b.MaxT, b.Samples)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// The query API shows NaN but no stale marker.
	want := map[string][]point{}
	for k, pts := range bl.want {
		for _, p := range pts {
			if !value.IsStaleNaN(p.v) {
				want[k] = append(want[k], p)
			}
		}
	}
	ts := harness.StartThanosStore(t, bucket)
	window := time.Since(time.UnixMilli(bl.minT)) + time.Hour
	rs, err := ts.Samples(ctx, `{__name__=~"redwire_bf_.+"}`, window)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]point{}
	for _, s := range rs {
		// Store gives every series its block's external labels.
		if c := s.Labels["cluster"]; c != "eu-1" {
			t.Fatalf("series %v: cluster %q, want the external label eu-1", s.Labels, c)
		}
		delete(s.Labels, "cluster")
		k := labels.FromMap(s.Labels).String()
		for _, pt := range s.Points {
			got[k] = append(got[k], point{pt.T.UnixMilli(), pt.V})
		}
	}
	// JSON carries NaN as "NaN": compare NaN by class; the bits were
	// checked in the blocks by the Prometheus test.
	for k, pts := range got {
		for i, pt := range pts {
			if w := want[k]; i < len(w) && math.IsNaN(pt.v) && math.IsNaN(w[i].v) {
				pts[i].v = w[i].v
			}
		}
	}
	if err := samePoints(want, got); err != nil {
		t.Fatalf("thanos query %s over store: %v", ts.QueryURL(), err)
	}
}
