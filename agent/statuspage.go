package agent

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The status page at /: what the person at the edge site with a browser
// needs at a glance. Which Redis answers, whether each endpoint's
// receiver takes the samples or the disk keeps them, and what changed
// lately. It shows the values of /api/v1/targets and /api/v1/status
// (api.go) and computes none of its own beyond formatting them. It is
// rendered on the server from an embedded template, with no script and
// nothing fetched from elsewhere, so it works on a site without internet
// and on a phone. It is one more path on the web mux, so
// --web.config.file's TLS and auth guard it as they guard /metrics.

//go:embed statuspage.html
var statusPageHTML string

// statusTemplate is parsed once, at start-up; a template that does not
// parse is a build mistake that every test of the page catches.
var statusTemplate = template.Must(template.New("statuspage.html").Funcs(template.FuncMap{
	"since":   since,
	"seconds": seconds,
	"bytes":   byteSize,
	"count":   count,
	"clock":   clock,
	"zero":    func(p *float64) bool { return p != nil && *p == 0 },
}).Parse(statusPageHTML))

// statusPageData is what the template renders.
type statusPageData struct {
	Now time.Time
	// Ready is false while the agent starts: Status and Targets are then
	// empty.
	Ready   bool
	Status  status
	Targets []targetInfo
	Gaps    []gap // the newest of GET /api/v1/gaps
	Links   []pageLink
}

// pageGaps is how many lost ranges the page shows; the API has them all.
const pageGaps = 20

// pageLink is a path the page links to, and what it holds.
type pageLink struct{ Path, What string }

// statusPage serves the page from what source returns (nil while the
// agent starts). pprof adds a link to /debug/pprof/.
func statusPage(source func() *apiSource, pprof bool) http.Handler {
	links := []pageLink{
		{"/metrics", "Prometheus metrics of the agent"},
		{"/api/v1/targets", "targets (JSON)"},
		{"/api/v1/status", "endpoints, buffers and recent changes (JSON)"},
		{"/api/v1/gaps", "lost and thinned ranges (JSON)"},
		{"/-/healthy", "liveness"},
		{"/-/ready", "readiness"},
	}
	if pprof {
		links = append(links, pageLink{"/debug/pprof/", "profiles"})
	}
	return http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		d := statusPageData{Now: time.Now().UTC(), Links: links}
		if src := source(); src != nil {
			d.Ready, d.Targets, d.Status = true, src.targets(), src.status()
			d.Gaps = src.gaps()
			d.Gaps = d.Gaps[:min(len(d.Gaps), pageGaps)]
		}
		// Rendered whole before anything is written, so that a failure
		// is a 500 rather than half a page.
		var b bytes.Buffer
		if err := statusTemplate.Execute(&b, d); err != nil {
			http.Error(rw, "rendering the status page: "+err.Error(), http.StatusInternalServerError)
			return
		}
		rw.Header().Set("Content-Type", "text/html; charset=utf-8")
		rw.Header().Set("Cache-Control", "no-store")
		_, _ = b.WriteTo(rw)
	})
}

// TargetsDown is how many targets redis_up calls down.
func (d statusPageData) TargetsDown() int {
	n := 0
	for _, t := range d.Targets {
		if !t.Up {
			n++
		}
	}
	return n
}

// verdict is the page's headline: what needs attention, one line each,
// and the class (ok, info, warn, bad) of the worst of it, for its colour.
type verdict struct {
	Class string
	Lines []string
}

// Verdict is the headline of d.
func (d statusPageData) Verdict() (v verdict) {
	rank := map[string]int{"ok": 0, "info": 1, "warn": 2, "bad": 3}
	v.Class = "ok"
	say := func(class, line string) {
		if rank[class] > rank[v.Class] {
			v.Class = class
		}
		v.Lines = append(v.Lines, line)
	}
	if !d.Ready {
		say("info", "Starting.")
		return v
	}
	for _, e := range d.Status.Endpoints {
		switch {
		case e.Paused:
			say("bad", fmt.Sprintf("Endpoint %s refuses our credentials or URL: sending is paused, data is kept.", e.Name))
		case e.Mode == modeDegraded.String():
			say("warn", fmt.Sprintf("Endpoint %s is down: samples go to the disk buffer.", e.Name))
		case e.Mode == modeReplay.String():
			say("info", fmt.Sprintf("Endpoint %s is back: replaying its backlog.", e.Name))
		case e.Mode == "":
			say("info", fmt.Sprintf("No remote-write endpoint: samples are kept in the %s buffer.", e.Name))
		}
	}
	if n := d.TargetsDown(); n > 0 {
		say("warn", fmt.Sprintf("%d of %d targets down.", n, len(d.Targets)))
	}
	if len(v.Lines) == 0 {
		say("ok", "All targets up, every endpoint delivering.")
	}
	return v
}

// since is how long before now t was, for a person: "4 min 10 s ago";
// "never" for the zero time.
func since(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < 0 {
		return "in " + duration(-d)
	}
	return duration(d) + " ago"
}

// seconds is a span given in seconds (as the JSON API gives it), for a
// person.
func seconds(s float64) string {
	return duration(time.Duration(s * float64(time.Second)))
}

// duration rounds d to its two largest units: "3 d 4 h", "12 min 5 s",
// "850 ms".
func duration(d time.Duration) string {
	if d < time.Second {
		return strconv.FormatInt(d.Milliseconds(), 10) + " ms"
	}
	units := []struct {
		name string
		size time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"min", time.Minute}, {"s", time.Second}}
	var parts []string
	for _, u := range units {
		if n := d / u.size; n > 0 || len(parts) > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, u.name))
			d -= n * u.size
		}
		if len(parts) == 2 {
			break
		}
	}
	return strings.Join(parts, " ")
}

// byteSize is n bytes in binary units: "1.5 MiB".
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// count groups the digits of an int or int64 by thousands: "1 234 567"
// (with narrow no-break spaces, which no locale reads as a decimal
// point).
func count(n any) (string, error) {
	var s string
	switch n := n.(type) {
	case int:
		s = strconv.Itoa(n)
	case int64:
		s = strconv.FormatInt(n, 10)
	default:
		return "", fmt.Errorf("count: %T is not an integer", n)
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString("\u202f")
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String(), nil
	}
	return b.String(), nil
}

// clock is a time to the second, in UTC as the agent's logs are.
func clock(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}
