package remotewrite

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/golang/snappy"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/redwire/redwire/internal/harness"
)

// answer is one scripted answer of a messageSender.
type answer struct {
	w   Written
	err error
}

// messageSender is a fake receiver that takes either message: it answers
// each request with the next scripted answer (past them: 2xx, saying it
// wrote everything of a 2.0 request) and writes down each request's
// message and samples, read back with that message's own prompb types.
type messageSender struct {
	t       *testing.T
	answers []answer
	msgs    []Message
	sent    []int
}

func (f *messageSender) Send(ctx context.Context, body []byte) error {
	_, err := f.SendMessage(ctx, MessageV1, body)
	return err
}

func (f *messageSender) SendMessage(_ context.Context, m Message, body []byte) (Written, error) {
	n := 0
	if m == MessageV2 {
		raw, err := snappy.Decode(nil, body)
		if err != nil {
			f.t.Fatal(err)
		}
		var req writev2.Request
		if err := req.Unmarshal(raw); err != nil {
			f.t.Fatalf("not a 2.0 request: %v", err)
		}
		for _, ts := range req.Timeseries {
			n += len(ts.Samples)
		}
	} else {
		var err error
		if n, err = harness.CountSamples(body); err != nil {
			f.t.Fatalf("not a 1.0 request: %v", err)
		}
	}
	f.msgs, f.sent = append(f.msgs, m), append(f.sent, n)
	if len(f.answers) == 0 {
		if m == MessageV2 {
			return Written{Samples: n, Reported: true}, nil
		}
		return Written{}, nil
	}
	a := f.answers[0]
	f.answers = f.answers[1:]
	return a.w, a.err
}

// fallbackRecorder is a recorder that also hears fall backs.
type fallbackRecorder struct {
	recorder
	fellBack []error
}

func (r *fallbackRecorder) FellBack(from, to Message, err error) {
	if from != MessageV2 || to != MessageV1 {
		panic("fell back from " + string(from) + " to " + string(to))
	}
	r.fellBack = append(r.fellBack, err)
}

// TestFallbackToRW1 walks the answers that show a receiver does not take
// 2.0: the same samples go again as 1.0 at once, are taken once, the fall
// back is heard once, and the endpoint speaks 1.0 from then on.
func TestFallbackToRW1(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first answer
	}{
		{"415", answer{err: &Error{StatusCode: 415, Class: Reject, Body: "unsupported"}}},
		{"2xx without Written headers", answer{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testPolicy
			p.Protocol = NewProtocol(MessageV2)
			s := &messageSender{t: t, answers: []answer{tc.first}}
			var r fallbackRecorder
			var enc Encoder
			if err := p.Deliver(context.Background(), s, &enc, testBatch(8), nil, &r); err != nil {
				t.Fatal(err)
			}
			if err := p.Deliver(context.Background(), s, &enc, testBatch(3), nil, &r); err != nil {
				t.Fatal(err)
			}
			if want := []Message{MessageV2, MessageV1, MessageV1}; !slices.Equal(s.msgs, want) {
				t.Errorf("requests of %v, want %v", s.msgs, want)
			}
			if !slices.Equal(s.sent, []int{8, 8, 3}) || !slices.Equal(r.taken, []int{8, 3}) || len(r.refused) != 0 {
				t.Errorf("sent %v, taken %v, refused %v; want sent [8 8 3], taken [8 3]", s.sent, r.taken, r.refused)
			}
			if len(r.fellBack) != 1 || ClassOf(r.fellBack[0]) != Unsupported {
				t.Errorf("fall backs heard: %v, want one of class %s", r.fellBack, Unsupported)
			}
			if len(r.failures) != 0 {
				t.Errorf("failed tries %v: a fall back is not a failure", r.failures)
			}
			if p.Protocol.Message() != MessageV1 || p.Protocol.Configured() != MessageV2 {
				t.Errorf("protocol speaks %s (configured %s) after the fall back", p.Protocol.Message(), p.Protocol.Configured())
			}
		})
	}
}

// TestRW2RequestsCountEachTry: Request hears the 2.0 try that showed a
// 1.x receiver as class Unsupported, not as taken: the samples are
// counted taken once, by the 1.0 request.
func TestRW2RequestsCountEachTry(t *testing.T) {
	p := testPolicy
	p.Protocol = NewProtocol(MessageV2)
	s := &messageSender{t: t, answers: []answer{{}}}
	var r classRecorder
	var enc Encoder
	if err := p.Deliver(context.Background(), s, &enc, testBatch(5), nil, &r); err != nil {
		t.Fatal(err)
	}
	if want := []string{"unsupported_message", "success"}; !slices.Equal(r.results, want) {
		t.Errorf("requests heard as %v, want %v", r.results, want)
	}
}

type classRecorder struct {
	recorder
	results []string
}

func (r *classRecorder) Request(_ int, _ time.Duration, err error) {
	res := "success"
	if err != nil {
		res = ClassOf(err).String()
	}
	r.results = append(r.results, res)
}

// TestRW2WrittenHeadersKeep2: a receiver that says what it wrote is a 2.0
// receiver: no fall back, everything taken.
func TestRW2WrittenHeadersKeep2(t *testing.T) {
	p := testPolicy
	p.Protocol = NewProtocol(MessageV2)
	s := &messageSender{t: t}
	var r fallbackRecorder
	var enc Encoder
	for range 2 {
		if err := p.Deliver(context.Background(), s, &enc, testBatch(4), nil, &r); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(s.msgs, []Message{MessageV2, MessageV2}) || len(r.fellBack) != 0 || !slices.Equal(r.taken, []int{4, 4}) {
		t.Errorf("requests %v, fall backs %v, taken %v; want two 2.0 requests taken", s.msgs, r.fellBack, r.taken)
	}
}

// TestRW2PartialWriteRefusesOnlyTheRest: a 400 that says 900 of 1000
// samples were written refuses 100.
func TestRW2PartialWriteRefusesOnlyTheRest(t *testing.T) {
	p := testPolicy
	p.Protocol = NewProtocol(MessageV2)
	refusal := &Error{StatusCode: 400, Class: Reject, Body: "out of order sample", Written: &Written{Samples: 900, Reported: true}}
	s := &messageSender{t: t, answers: []answer{{w: *refusal.Written, err: refusal}}}
	var r fallbackRecorder
	var enc Encoder
	b := testBatch(1000)
	if err := p.Deliver(context.Background(), s, &enc, b, nil, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.refused) != 1 || len(r.refusedErrs) != 1 {
		t.Fatalf("refused parts %v, want the one request's", r.refused)
	}
	if n := Refused(b.Len(), r.refusedErrs[0]); n != 100 {
		t.Errorf("Refused = %d, want 100 of 1000", n)
	}
	if n := Refused(b.Len(), &Error{StatusCode: 400, Class: Reject}); n != 1000 {
		t.Errorf("Refused without Written headers = %d, want all 1000", n)
	}
	if n := Refused(b.Len(), &Error{StatusCode: 400, Class: Reject, Written: &Written{Samples: 5000, Reported: true}}); n != 0 {
		t.Errorf("Refused when the receiver claims more than it was sent = %d, want 0", n)
	}
	if len(r.fellBack) != 0 {
		t.Errorf("a 400 is not a fall back: %v", r.fellBack)
	}
}

// TestRW2PreparedBodyAfterFallback: a 2.0 body prepared ahead is not sent
// once the endpoint has fallen back: the batch is encoded as 1.0.
func TestRW2PreparedBodyAfterFallback(t *testing.T) {
	proto := NewProtocol(MessageV2)
	p := testPolicy
	p.Protocol = proto
	var enc Encoder
	enc.msg = MessageV2
	b := testBatch(3)
	body, err := enc.Encode(&b)
	if err != nil {
		t.Fatal(err)
	}
	proto.fallBack()
	s := &messageSender{t: t}
	var r fallbackRecorder
	if err := p.Deliver(context.Background(), s, &enc, b, body, &r); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.msgs, []Message{MessageV1}) || !slices.Equal(s.sent, []int{3}) {
		t.Errorf("requests %v carrying %v samples, want one 1.0 request of 3", s.msgs, s.sent)
	}
}

// TestRW2OnlyThroughAMessageSender: a Sender that cannot post 2.0 is
// sent 1.0, whatever the protocol says.
func TestRW2OnlyThroughAMessageSender(t *testing.T) {
	p := testPolicy
	p.Protocol = NewProtocol(MessageV2)
	s := &fakeSender{}
	var r recorder
	var enc Encoder
	if err := p.Deliver(context.Background(), s, &enc, testBatch(2), nil, &r); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.sent, []int{2}) {
		t.Errorf("sent %v (a 2.0 body counts as no samples), want one 1.0 request of 2", s.sent)
	}
}

// TestClientRW2Headers: the client sends 2.0 with the spec's headers and
// reads the Written headers of any answer.
func TestClientRW2Headers(t *testing.T) {
	var got http.Header
	status := http.StatusNoContent
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.Header().Set("X-Prometheus-Remote-Write-Samples-Written", "7")
		w.Header().Set("X-Prometheus-Remote-Write-Histograms-Written", "0")
		w.Header().Set("X-Prometheus-Remote-Write-Exemplars-Written", "0")
		w.WriteHeader(status)
	}))
	defer srv.Close()
	c := hostileClient(t, srv.URL, false)
	w, err := c.SendMessage(context.Background(), MessageV2, ProbeBody)
	if err != nil || w != (Written{Samples: 7, Reported: true}) {
		t.Fatalf("SendMessage = %+v, %v; want 7 samples written", w, err)
	}
	for h, want := range map[string]string{
		"Content-Type":                      "application/x-protobuf;proto=io.prometheus.write.v2.Request",
		"Content-Encoding":                  "snappy",
		"X-Prometheus-Remote-Write-Version": "2.0.0",
	} {
		if got.Get(h) != want {
			t.Errorf("%s: %q, want %q", h, got.Get(h), want)
		}
	}
	status = http.StatusBadRequest
	_, err = c.SendMessage(context.Background(), MessageV2, ProbeBody)
	var re *Error
	if !errors.As(err, &re) || re.Written == nil || re.Written.Samples != 7 {
		t.Fatalf("400 = %v; want an *Error saying 7 samples were written", err)
	}
	if err := c.Send(context.Background(), ProbeBody); err == nil || got.Get("X-Prometheus-Remote-Write-Version") != "0.1.0" || got.Get("Content-Type") != "application/x-protobuf" {
		t.Errorf("1.0 request with headers %v", got)
	}
}
