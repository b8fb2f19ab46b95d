package agent

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/remotewrite"
	"github.com/redwire/redwire/sample"
)

// maxTries bounds how often one batch is sent before it is given up.
// The durable buffer replaces this with spilling to disk; until then a few
// tries ride out a receiver restart without holding up newer data forever.
const maxTries = 5

// sender drains one endpoint's queue, one request at a time, so that every
// series reaches the receiver in time order.
type sender struct {
	endpoint string
	client   *remotewrite.Client
	queue    *buffer.Queue
	enc      remotewrite.Encoder
	minWait  time.Duration
	maxWait  time.Duration
	m        *metrics
	log      *slog.Logger

	failing bool // logs only state changes
}

func newSender(cfg remotewrite.EndpointConfig, version string, m *metrics, log *slog.Logger) (*sender, error) {
	c, err := remotewrite.NewClient(cfg, version)
	if err != nil {
		return nil, err
	}
	q := cfg.QueueConfig
	s := &sender{
		endpoint: cfg.Label(),
		client:   c,
		queue:    buffer.NewQueue(q.Capacity, q.MaxSamplesPerSend, time.Duration(q.BatchSendDeadline)),
		minWait:  time.Duration(q.MinBackoff),
		maxWait:  time.Duration(q.MaxBackoff),
		m:        m,
		log:      log.With("endpoint", cfg.Label()),
	}
	// Touch every labelled series so dashboards see zeros, not gaps.
	m.queueSamples.WithLabelValues(s.endpoint)
	m.samplesQueued.WithLabelValues(s.endpoint)
	m.rwRetries.WithLabelValues(s.endpoint)
	m.rwSamples.WithLabelValues(s.endpoint, "success")
	m.rwRequests.WithLabelValues(s.endpoint, "success")
	return s, nil
}

// enqueue is called by scrape loops; it never blocks.
func (s *sender) enqueue(b sample.Batch) {
	if dropped := s.queue.Append(b); dropped > 0 {
		s.m.samplesDropped.WithLabelValues(s.endpoint, "queue_full").Add(float64(dropped))
	}
	s.m.samplesQueued.WithLabelValues(s.endpoint).Add(float64(b.Len()))
	s.m.queueSamples.WithLabelValues(s.endpoint).Set(float64(s.queue.Len()))
}

func (s *sender) run(ctx context.Context) {
	for {
		b, err := s.queue.Next(ctx)
		if err != nil {
			return // closed and drained, or the flush deadline passed
		}
		s.m.queueSamples.WithLabelValues(s.endpoint).Set(float64(s.queue.Len()))
		s.send(ctx, &b)
	}
}

// send delivers one batch: retries with backoff and jitter on retryable
// errors, honours Retry-After, halves the batch on 413, and drops it only
// when the receiver rejects it for good or the tries are used up.
func (s *sender) send(ctx context.Context, b *sample.Batch) {
	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(s.minWait),
		backoff.WithMaxInterval(s.maxWait),
		backoff.WithMaxElapsedTime(0),
	)
	for try := 1; ; try++ {
		if try > 1 {
			s.m.rwRetries.WithLabelValues(s.endpoint).Inc()
		}
		err := s.post(ctx, b)
		if err == nil {
			s.setFailing(false, nil)
			return
		}
		class := remotewrite.ClassOf(err)
		switch class {
		case remotewrite.Reject:
			s.log.Error("receiver rejected a batch; dropping it", "samples", b.Len(), "err", err)
			s.drop(b, "rejected")
			return
		case remotewrite.TooLarge:
			if b.Len() <= 1 {
				s.log.Error("receiver rejected a single sample as too large; dropping it", "err", err)
				s.drop(b, "rejected")
				return
			}
			half := b.Len() / 2
			first := sample.Batch{Samples: b.Samples[:half], Metadata: b.Metadata}
			second := sample.Batch{Samples: b.Samples[half:]}
			s.send(ctx, &first)
			s.send(ctx, &second)
			return
		}
		s.setFailing(true, err)
		if try >= maxTries {
			s.log.Error("giving up on a batch after retries", "tries", try, "samples", b.Len(), "err", err)
			s.drop(b, "retries_exhausted")
			return
		}
		wait := bo.NextBackOff()
		var re *remotewrite.Error
		if errors.As(err, &re) && re.RetryAfter > wait {
			wait = re.RetryAfter
		}
		select {
		case <-ctx.Done():
			s.drop(b, "shutdown")
			return
		case <-time.After(wait):
		}
	}
}

// post makes one request and records its outcome.
func (s *sender) post(ctx context.Context, b *sample.Batch) error {
	body, err := s.enc.Encode(b)
	if err != nil {
		return &remotewrite.Error{Class: remotewrite.Reject, Err: err}
	}
	start := time.Now()
	err = s.client.Send(ctx, body)
	s.m.rwDuration.WithLabelValues(s.endpoint).Observe(time.Since(start).Seconds())
	result := "success"
	if err != nil {
		result = remotewrite.ClassOf(err).String()
	}
	s.m.rwRequests.WithLabelValues(s.endpoint, result).Inc()
	s.m.rwSamples.WithLabelValues(s.endpoint, result).Add(float64(b.Len()))
	if err == nil {
		s.m.lastSendSuccess.WithLabelValues(s.endpoint).SetToCurrentTime()
	}
	return err
}

func (s *sender) setFailing(failing bool, err error) {
	if failing == s.failing {
		return
	}
	s.failing = failing
	if failing {
		attrs := []any{"err", err}
		var re *remotewrite.Error
		if errors.As(err, &re) && re.StatusCode != 0 {
			attrs = append(attrs, "status", strconv.Itoa(re.StatusCode))
		}
		s.log.Warn("remote write failing; retrying with backoff", attrs...)
		return
	}
	s.log.Info("remote write recovered")
}

func (s *sender) drop(b *sample.Batch, reason string) {
	s.m.samplesDropped.WithLabelValues(s.endpoint, reason).Add(float64(b.Len()))
}

// dropRemaining counts what is still queued after the final flush.
func (s *sender) dropRemaining(reason string) {
	if n := s.queue.Len(); n > 0 {
		s.m.samplesDropped.WithLabelValues(s.endpoint, reason).Add(float64(n))
		s.log.Warn("samples not sent before shutdown", "samples", n)
	}
}
