package remotewrite

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// refusalCauses is what each fixture of testdata/refusals means: its
// cause, whether the receiver rolled the request back, and whether the
// refusal is past a receiver-wide cutoff. Every fixture must be here.
var refusalCauses = map[string]struct {
	cause              Cause
	rolledBack, cutoff bool
}{
	"prometheus.txt":                 {CauseAge, true, true},
	"prometheus3.txt":                {CauseAge, true, true},
	"thanos.txt":                     {CauseAge, false, true},
	"prometheus-duplicate.txt":       {CauseDuplicate, true, false},
	"prometheus-invalid-label.txt":   {CauseUnknown, false, false}, // 2.42 skips the series and answers 204
	"prometheus3-duplicate.txt":      {CauseDuplicate, true, false},
	"prometheus3-invalid-label.txt":  {CauseUnknown, false, false}, // 3.x too skips the series and answers 204
	"victoriametrics-malformed.txt":  {CauseMalformed, true, false},
	"mimir-out-of-bounds.txt":        {CauseAge, false, true},
	"mimir-too-far-in-past.txt":      {CauseAge, false, true},
	"mimir-out-of-order.txt":         {CauseAge, false, false},
	"mimir-duplicate.txt":            {CauseDuplicate, false, false},
	"mimir-max-series-per-user.txt":  {CauseLimits, false, false},
	"mimir-label-value-too-long.txt": {CauseLimits, false, false},
	"mimir-invalid-label.txt":        {CauseMalformed, false, false},
	"thanos-out-of-order.txt":        {CauseAge, false, false},
	"thanos-duplicate.txt":           {CauseDuplicate, false, false},
	"thanos-duplicate-labels.txt":    {CauseMalformed, false, false},
}

// fixtureError is the fixture's answer as the client makes it an error;
// nil for a 2xx.
func fixtureError(status int, body string) error {
	if status/100 == 2 {
		return nil
	}
	return &Error{StatusCode: status, Class: classify(status), Body: body}
}

func TestRefusalFixturesCause(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "refusals", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < len(refusalCauses) {
		t.Errorf("%d fixtures, %d in refusalCauses: one is missing", len(files), len(refusalCauses))
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			want, ok := refusalCauses[name]
			if !ok {
				t.Fatalf("%s is not in refusalCauses: say what it means", name)
			}
			err := fixtureError(readRefusal(t, name))
			if got := CauseOf(err); got != want.cause {
				t.Errorf("CauseOf = %v, want %v", got, want.cause)
			}
			if got := RolledBack(err); got != want.rolledBack {
				t.Errorf("RolledBack = %v, want %v", got, want.rolledBack)
			}
			if got := pastCutoff(err); got != want.cutoff {
				t.Errorf("pastCutoff = %v, want %v", got, want.cutoff)
			}
		})
	}
}

func TestCauseOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want Cause
	}{
		{nil, CauseUnknown},
		{&Error{StatusCode: 503, Class: Retry, Body: "out of bounds"}, CauseUnknown},
		{&Error{StatusCode: 400, Class: Reject, Body: "out of bounds: timestamp is too far in the future"}, CauseUnknown},
		{&Error{StatusCode: 400, Class: Reject, Body: "too old sample"}, CauseAge},
		{&Error{StatusCode: 400, Class: Reject, Body: "invalid labels for series, labels {a=\"1\"}, duplicated label a"}, CauseMalformed},
		{&Error{StatusCode: 400, Class: Reject, Body: "cannot unmarshal WriteRequest"}, CauseMalformed},
		{&Error{StatusCode: 400, Class: Reject, Body: "add 2 samples: out of bounds; add 1 series: out of order labels"}, CauseAge},
		{&Error{StatusCode: 400, Class: Reject, Body: "something new"}, CauseUnknown},
	} {
		if got := CauseOf(tc.err); got != tc.want {
			t.Errorf("CauseOf(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	for c, s := range map[Cause]string{CauseUnknown: "unknown", CauseAge: "age", CauseDuplicate: "duplicate", CauseLimits: "limits", CauseMalformed: "malformed", 99: "unknown"} {
		if c.String() != s {
			t.Errorf("Cause(%d).String() = %q, want %q", int(c), c.String(), s)
		}
	}
}

// FuzzCauseOf: any answer reads without panic, and the three readings
// agree: a cutoff is an age, and only a refusal has a cause or rolled
// back. Its seeds are the fixtures (and testdata/fuzz/FuzzCauseOf).
func FuzzCauseOf(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "refusals", "*.txt"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		_, rest, _ := strings.Cut(string(data), "\nstatus: ")
		code, body, _ := strings.Cut(rest, "\nbody: ")
		var status int
		for _, c := range code {
			status = status*10 + int(c-'0')
		}
		f.Add(status, strings.TrimSuffix(body, "\n"))
	}
	f.Fuzz(func(t *testing.T, status int, body string) {
		err := &Error{StatusCode: status, Class: classify(status), Body: body}
		c, rb, cut := CauseOf(err), RolledBack(err), pastCutoff(err)
		if err.Class != Reject && (c != CauseUnknown || rb || cut) {
			t.Errorf("%d %q is no refusal, but cause %v, rolled back %v, cutoff %v", status, body, c, rb, cut)
		}
		if cut && c != CauseAge {
			t.Errorf("%d %q: past a cutoff but cause %v", status, body, c)
		}
		_ = c.String()
	})
}
