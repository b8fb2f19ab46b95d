package buffer

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/sample"
)

func batchOf(t0, n int) sample.Batch {
	b := sample.Batch{Metadata: []sample.Metadata{{Family: "m", Type: sample.Gauge, Help: "h"}}}
	for i := 0; i < n; i++ {
		b.Samples = append(b.Samples, sample.Sample{Labels: labels.FromStrings("__name__", "m"), T: int64(t0 + i), V: float64(t0 + i)})
	}
	return b
}

func TestQueueFIFOAndBatchSize(t *testing.T) {
	q := NewQueue(100, 4, time.Hour)
	q.Append(batchOf(0, 3))
	q.Append(batchOf(3, 7))
	ctx := context.Background()
	var got []int64
	for _, want := range []int{4, 4} {
		b, err := q.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if b.Len() != want {
			t.Fatalf("batch of %d, want %d", b.Len(), want)
		}
		for _, s := range b.Samples {
			got = append(got, s.T)
		}
	}
	q.Close()
	b, err := q.Next(ctx) // closed: the partial remainder leaves at once
	if err != nil || b.Len() != 2 {
		t.Fatalf("after close: %d samples, %v; want 2, nil", b.Len(), err)
	}
	for _, s := range b.Samples {
		got = append(got, s.T)
	}
	for i, ts := range got {
		if ts != int64(i) {
			t.Fatalf("order broken at %d: %v", i, got)
		}
	}
	if _, err := q.Next(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("want ErrClosed, got %v", err)
	}
}

func TestQueueDropsOldestOverCapacity(t *testing.T) {
	q := NewQueue(5, 10, time.Hour)
	if d := q.Append(batchOf(0, 4)); d != 0 {
		t.Fatalf("dropped %d under capacity", d)
	}
	if d := q.Append(batchOf(4, 4)); d != 3 {
		t.Fatalf("dropped %d, want 3", d)
	}
	q.Close()
	b, _ := q.Next(context.Background())
	if b.Len() != 5 || b.Samples[0].T != 3 || b.Samples[4].T != 7 {
		t.Fatalf("kept %v, want the newest five (3..7)", b.Samples)
	}
}

func TestQueueSendsPartialBatchAfterDeadline(t *testing.T) {
	q := NewQueue(100, 1000, 20*time.Millisecond)
	q.Append(batchOf(0, 1))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := q.Next(ctx)
	if err != nil || b.Len() != 1 {
		t.Fatalf("got %d samples, %v", b.Len(), err)
	}
}

func TestQueueNextHonoursContext(t *testing.T) {
	q := NewQueue(100, 10, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := q.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
}

func TestQueueWakesOnAppend(t *testing.T) {
	q := NewQueue(100, 2, time.Hour)
	got := make(chan int)
	go func() {
		b, _ := q.Next(context.Background())
		got <- b.Len()
	}()
	q.Append(batchOf(0, 2))
	if n := <-got; n != 2 {
		t.Fatalf("got %d", n)
	}
}

func TestQueueMetadataRidesWithFirstBatchAndOnChange(t *testing.T) {
	q := NewQueue(100, 1, time.Hour)
	q.Append(batchOf(0, 2))
	ctx := context.Background()
	b1, _ := q.Next(ctx)
	b2, _ := q.Next(ctx)
	if len(b1.Metadata) != 1 || len(b2.Metadata) != 0 {
		t.Fatalf("metadata: first %d, second %d; want 1, 0", len(b1.Metadata), len(b2.Metadata))
	}
	nb := batchOf(2, 1)
	nb.Metadata[0].Help = "changed"
	q.Append(nb)
	b3, _ := q.Next(ctx)
	if len(b3.Metadata) != 1 || b3.Metadata[0].Help != "changed" {
		t.Fatalf("changed metadata not sent: %+v", b3.Metadata)
	}
}
