package remotewrite

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/redwire/redwire/internal/harness"
)

// What real receivers answer to a sample older than their head window
// (out of bounds): what a replaying agent meets after an outage longer
// than the receiver's window. testdata/refusals/NAME.txt holds each answer
// as the client reads it; TestRefusalFixturesClass pins what redwire does
// with it today, and TestRefusals*OutOfBounds check that the receivers
// still answer so (-update-refusals rewrites the files from them).

var updateRefusals = flag.Bool("update-refusals", false, "rewrite testdata/refusals/*.txt from the real receivers")

// refusal is one receiver's answer to an out-of-bounds sample.
type refusal struct {
	file  string // in testdata/refusals
	what  string // the receiver and its version, for the fixture's header
	start func(testing.TB) harness.Receiver
	// class is what the client makes of the answer today.
	class Class
}

var refusals = map[string]refusal{
	"prometheus": {
		file:  "prometheus.txt",
		what:  "Prometheus 2.42 (Debian's)",
		start: func(t testing.TB) harness.Receiver { return harness.StartPrometheus(t) },
		class: Reject,
	},
	"prometheus3": {
		file:  "prometheus3.txt",
		what:  "Prometheus 3.x (module " + harness.Prometheus3Version + ")",
		start: func(t testing.TB) harness.Receiver { return harness.StartPrometheus3(t) },
		class: Reject,
	},
	"thanos": {
		file:  "thanos.txt",
		what:  "Thanos Receive " + harness.ThanosVersion,
		start: func(t testing.TB) harness.Receiver { return harness.StartThanosReceive(t) },
		class: Reject,
	},
}

// The fixture format: comment lines, then "status: N", then "body: " and
// the body to the end of the file.
const refusalHeader = `# What %s answers to a remote-write 1.0 sample older than its head
# window (out of bounds), as remotewrite.Client reads it. Captured by
# TestRefusals*OutOfBounds in remotewrite/refusals_test.go: run
#   go test ./remotewrite -run 'Refusals' -update-refusals
# to capture it again. Times and numbers in the body read <N>.
`

// readRefusal parses a fixture.
func readRefusal(t *testing.T, file string) (status int, body string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "refusals", file))
	if err != nil {
		t.Fatal(err)
	}
	rest := string(data)
	for strings.HasPrefix(rest, "#") {
		_, rest, _ = strings.Cut(rest, "\n")
	}
	line, rest, _ := strings.Cut(rest, "\n")
	code, ok := strings.CutPrefix(line, "status: ")
	status, err = strconv.Atoi(code)
	if !ok || err != nil {
		t.Fatalf("%s: want a status: line after the comments, got %q", file, line)
	}
	body, ok = strings.CutPrefix(strings.TrimSuffix(rest, "\n"), "body: ")
	if !ok {
		t.Fatalf("%s: want a body: line after the status", file)
	}
	return status, body
}

// TestRefusalFixturesClass replays every captured answer through the real
// client and pins its class: today every out-of-bounds answer is a
// refusal, dropped and counted. A later change that tells "too old" from
// other refusals changes this table on purpose.
func TestRefusalFixturesClass(t *testing.T) {
	for name, rc := range refusals {
		t.Run(name, func(t *testing.T) {
			status, body := readRefusal(t, rc.file)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, body, status)
			}))
			defer srv.Close()
			var e *Error
			if err := sendOne(t, srv.URL, time.Now()); !errors.As(err, &e) {
				t.Fatalf("send: %v, want an *Error", err)
			}
			if e.StatusCode != status || e.Body != body || e.Class != rc.class {
				t.Errorf("client read %d %q as %s, want %d %q as %s", e.StatusCode, e.Body, e.Class, status, body, rc.class)
			}
		})
	}
}

func TestRefusalsPrometheusOutOfBounds(t *testing.T) {
	t.Parallel()
	checkRefusal(t, "prometheus")
}

func TestRefusalsPrometheus3OutOfBounds(t *testing.T) {
	t.Parallel()
	checkRefusal(t, "prometheus3")
}

func TestRefusalsThanosOutOfBounds(t *testing.T) {
	t.Parallel()
	checkRefusal(t, "thanos")
}

// checkRefusal captures what the named receiver answers to an
// out-of-bounds sample and wants it to be its fixture (or writes the
// fixture, with -update-refusals).
func checkRefusal(t *testing.T, name string) {
	rc := refusals[name]
	status, body := captureOutOfBounds(t, rc.start(t))
	if *updateRefusals {
		text := fmt.Sprintf(refusalHeader, rc.what) + fmt.Sprintf("status: %d\nbody: %s\n", status, body)
		if err := os.WriteFile(filepath.Join("testdata", "refusals", rc.file), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	wantStatus, wantBody := readRefusal(t, rc.file)
	if status != wantStatus || body != wantBody {
		t.Errorf("%s answers %d %q to an out-of-bounds sample; %s says %d %q (rerun with -update-refusals if the receiver changed)",
			name, status, body, rc.file, wantStatus, wantBody)
	}
}

// captureOutOfBounds sends a sample now, then one three hours older on the
// same series: the head of a TSDB takes samples no older than an hour
// before its newest (half its 2 h block), so the second is out of bounds
// on any receiver without an out-of-order window. It returns the answer
// as the client reads it, numbers (times, counts) replaced by <N> so that
// the fixture is the same from run to run.
func captureOutOfBounds(t *testing.T, recv harness.Receiver) (int, string) {
	t.Helper()
	now := time.Now()
	if err := sendOne(t, recv.WriteURL(), now); err != nil {
		t.Fatalf("send a current sample to %s: %v", recv.WriteURL(), err)
	}
	err := sendOne(t, recv.WriteURL(), now.Add(-3*time.Hour))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("send a sample 3 h old to %s: %v, want a refusal", recv.WriteURL(), err)
	}
	return e.StatusCode, numbers.ReplaceAllString(e.Body, "<N>")
}

var numbers = regexp.MustCompile(`[0-9]+`)

// sendOne sends one sample of the probe series at ts through a real
// Client.
func sendOne(t *testing.T, writeURL string, ts time.Time) error {
	t.Helper()
	return sendSample(t, writeURL, []prompb.Label{{Name: "__name__", Value: "redwire_refusal_probe"}, {Name: "job", Value: "refusals"}}, ts, 1)
}

// sendSample sends one sample of the series ls at ts through a real
// Client.
func sendSample(t *testing.T, writeURL string, ls []prompb.Label, ts time.Time, v float64) error {
	t.Helper()
	wr := prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  ls,
		Samples: []prompb.Sample{{Value: v, Timestamp: ts.UnixMilli()}},
	}}}
	raw, err := wr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return sendBody(t, writeURL, snappy.Encode(nil, raw))
}

// sendBody posts body as a 1.0 write request through a real Client.
func sendBody(t *testing.T, writeURL string, body []byte) error {
	t.Helper()
	u, err := url.Parse(writeURL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(NewEndpointConfig(u), "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.Send(ctx, body)
}

// The other refusals captured from real receivers: a duplicate sample
// (another value at a series' timestamp), a series with an invalid label
// name, and a body that is not snappy. Each kind has its own capture and
// sentence in the fixture's header; -update-refusals rewrites them too.
var otherRefusals = []struct {
	file, what, kind string
	start            func(testing.TB) harness.Receiver
	capture          func(*testing.T, harness.Receiver) (int, string)
}{
	{"prometheus-duplicate.txt", refusals["prometheus"].what, "a second value at a series' timestamp (duplicate sample)",
		refusals["prometheus"].start, captureDuplicate},
	{"prometheus3-duplicate.txt", refusals["prometheus3"].what, "a second value at a series' timestamp (duplicate sample)",
		refusals["prometheus3"].start, captureDuplicate},
	{"prometheus-invalid-label.txt", refusals["prometheus"].what, "a series with an invalid label name (not UTF-8)",
		refusals["prometheus"].start, captureInvalidLabel},
	{"prometheus3-invalid-label.txt", refusals["prometheus3"].what, "a series with an invalid label name (not UTF-8)",
		refusals["prometheus3"].start, captureInvalidLabel},
	{"victoriametrics-malformed.txt", "VictoriaMetrics (Debian's)", "a body that is not snappy (malformed)",
		func(t testing.TB) harness.Receiver { return harness.StartVictoriaMetrics(t) }, captureMalformed},
}

const otherRefusalHeader = `# What %s answers to a remote-write 1.0 request of
# %s, as remotewrite.Client reads it. Captured by
# TestRefusalsOther in remotewrite/refusals_test.go: run
#   go test ./remotewrite -run 'Refusals' -update-refusals
# to capture it again. Times and numbers in the body read <N>.
`

// TestRefusalsOther captures each of otherRefusals from its receiver and
// wants it to be its fixture (or writes it, with -update-refusals).
func TestRefusalsOther(t *testing.T) {
	for _, rc := range otherRefusals {
		t.Run(rc.file, func(t *testing.T) {
			status, body := rc.capture(t, rc.start(t))
			if *updateRefusals {
				text := fmt.Sprintf(otherRefusalHeader, rc.what, rc.kind) + fmt.Sprintf("status: %d\nbody: %s\n", status, body)
				if err := os.WriteFile(filepath.Join("testdata", "refusals", rc.file), []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			wantStatus, wantBody := readRefusal(t, rc.file)
			if status != wantStatus || body != wantBody {
				t.Errorf("answered %d %q; %s says %d %q (rerun with -update-refusals if the receiver changed)",
					status, body, rc.file, wantStatus, wantBody)
			}
		})
	}
}

// answerOf is err as a fixture holds it: its status and body, numbers
// replaced by <N>; 2xx and an empty body if err is nil.
func answerOf(t *testing.T, err error) (int, string) {
	t.Helper()
	if err == nil {
		return http.StatusNoContent, ""
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%v, want an answer", err)
	}
	return e.StatusCode, numbers.ReplaceAllString(e.Body, "<N>")
}

func captureDuplicate(t *testing.T, recv harness.Receiver) (int, string) {
	ls := []prompb.Label{{Name: "__name__", Value: "redwire_refusal_duplicate"}}
	now := time.Now()
	if err := sendSample(t, recv.WriteURL(), ls, now, 1); err != nil {
		t.Fatalf("send a sample: %v", err)
	}
	return answerOf(t, sendSample(t, recv.WriteURL(), ls, now, 2))
}

func captureInvalidLabel(t *testing.T, recv harness.Receiver) (int, string) {
	ls := []prompb.Label{{Name: "__name__", Value: "redwire_refusal_label"}, {Name: "bad\xff", Value: "x"}}
	return answerOf(t, sendSample(t, recv.WriteURL(), ls, time.Now(), 1))
}

func captureMalformed(t *testing.T, recv harness.Receiver) (int, string) {
	return answerOf(t, sendBody(t, recv.WriteURL(), []byte("this is not snappy")))
}
