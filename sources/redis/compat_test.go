package redis

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	goredis "github.com/redis/go-redis/v9"

	"github.com/redwire/redwire/internal/harness"
)

// exporterBin is Debian's build of oliver006/redis_exporter (package
// prometheus-redis-exporter, 1.45 here), the reference for redwire's
// promise that dashboards and alert rules written for it keep working.
const exporterBin = "prometheus-redis-exporter"

// compatExclusions is the list of exporter families redwire does not (yet)
// produce, each with the reason; see readCompatExclusions for the format.
var compatExclusions = filepath.Join("testdata", "compat", "exclusions.txt")

// compatFamily is what queries depend on in a family: its type and its
// label names. Label values are data, not contract.
type compatFamily struct {
	typ    string   // lower-case: "counter", "gauge", "summary", ...
	labels []string // sorted, without instance and job
}

func (f compatFamily) String() string {
	return fmt.Sprintf("%s {%s}", f.typ, strings.Join(f.labels, ","))
}

// TestRedisExporterCompatibility scrapes one real Redis master and its
// replica with both the real redis_exporter and redwire, and requires every
// family the exporter exports to exist in redwire with the same type and
// label names, unless testdata/compat/exclusions.txt says why not. Families
// only redwire has are logged, not failed: they are redwire's extras.
func TestRedisExporterCompatibility(t *testing.T) {
	bin, err := exec.LookPath(exporterBin)
	if err != nil {
		// Like the harness, never skip: a green run means the comparison ran.
		t.Fatalf("%s not found in PATH: run `make test` (it installs it) or apt-get install prometheus-redis-exporter", exporterBin)
	}
	excl := readCompatExclusions(t, compatExclusions)

	// Without the delay the master waits 5 s for more replicas before the
	// first full sync.
	master := harness.StartRedis(t, harness.WithArgs("--repl-diskless-sync-delay", "0"))
	_, masterPort, err := net.SplitHostPort(master.Addr())
	if err != nil {
		t.Fatalf("master address %q: %v", master.Addr(), err)
	}
	replica := harness.StartRedis(t, harness.WithArgs("--replicaof", "127.0.0.1", masterPort))
	seedCompat(t, master, replica)

	seen := map[string]bool{} // exporter families over both roles
	for _, tc := range []struct {
		role string
		r    *harness.Redis
	}{{"master", master}, {"replica", replica}} {
		t.Run(tc.role, func(t *testing.T) {
			ref := exporterFamilies(t, bin, tc.r.URL())
			for name := range ref {
				seen[name] = true
			}
			got := redwireFamilies(t, tc.r.URL())
			problems, stale := compareCompat(ref, got, excl)
			if len(problems) > 0 {
				t.Errorf("%d families differ from %s on the %s (fix the INFO mapping, or add the family to %s with the reason):\n  %s",
					len(problems), exporterBin, tc.role, compatExclusions, strings.Join(problems, "\n  "))
			}
			for _, s := range stale {
				t.Logf("exclusion to revisit: %s", s)
			}
			if extras := compatExtras(ref, got); len(extras) > 0 {
				t.Logf("%d redwire extras on the %s (no %s family): %s",
					len(extras), tc.role, exporterBin, strings.Join(extras, ", "))
			}
		})
	}
	if t.Failed() {
		return // a role that was not scraped would make every entry look unused
	}
	families := slices.Collect(maps.Keys(seen))
	for _, x := range excl {
		if !slices.ContainsFunc(families, x.matches) {
			t.Logf("exclusion to revisit: %s matches no family %s exported here", x.pattern, exporterBin)
		}
	}
}

// seedCompat gives both servers what makes INFO's conditional sections and
// fields appear: keys with and without TTLs in db0 and db3 (keyspace, avg
// TTL), a handful of commands (commandstats, latencystats), error replies
// (errorstats) and an online replica (slaveN on the master, master_* on the
// replica). It returns once the replica holds the data and the master sees
// it online, so both scrapes see a steady state.
func seedCompat(t *testing.T, master, replica *harness.Redis) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	db3 := goredis.NewClient(&goredis.Options{Addr: master.Addr(), DB: 3})
	defer db3.Close()
	for _, c := range []struct {
		client *goredis.Client
		args   []any
	}{
		{master.Client(), []any{"SET", "session:1", "a", "EX", "3600"}},
		{master.Client(), []any{"SET", "session:2", "b", "EX", "7200"}},
		{master.Client(), []any{"SET", "counter", "1"}},
		{master.Client(), []any{"INCR", "counter"}},
		{master.Client(), []any{"GET", "counter"}},
		{master.Client(), []any{"HSET", "user:1", "name", "x", "age", "3"}},
		{master.Client(), []any{"RPUSH", "queue", "j1", "j2"}},
		{db3, []any{"SET", "cache:1", "v", "EX", "600"}},
		{db3, []any{"SET", "cache:2", "v"}},
	} {
		if err := c.client.Do(ctx, c.args...).Err(); err != nil {
			t.Fatalf("%v on %s: %v", c.args, master.Addr(), err)
		}
	}
	// Error replies: a type error (commandstats failed_calls, errorstats
	// WRONGTYPE) and an unknown command (errorstats ERR); the replica gets
	// its own below, once it is read-only.
	for _, args := range [][]any{{"INCR", "queue"}, {"NOSUCHCOMMAND"}} {
		if err := master.Client().Do(ctx, args...).Err(); err == nil {
			t.Fatalf("%v on %s succeeded; the test needs an error reply", args, master.Addr())
		}
	}

	harness.WaitFor(t, 10*time.Second, "the replica to sync and the master to see it online", func() (bool, error) {
		rinfo, err := replica.Client().Info(ctx, "replication", "keyspace").Result()
		if err != nil {
			return false, err
		}
		if !strings.Contains(rinfo, "master_link_status:up") {
			return false, fmt.Errorf("replica link not up yet")
		}
		if !strings.Contains(rinfo, "db3:keys=2,") {
			return false, fmt.Errorf("db3 not replicated yet")
		}
		minfo, err := master.Client().Info(ctx, "replication").Result()
		if err != nil {
			return false, err
		}
		if !strings.Contains(minfo, "state=online") {
			return false, fmt.Errorf("master does not list an online replica yet")
		}
		return true, nil
	})
	// errorstats READONLY on the replica.
	if err := replica.Client().Set(ctx, "written-to-replica", "x", 0).Err(); err == nil {
		t.Fatalf("SET on replica %s succeeded; the test needs a READONLY error reply", replica.Addr())
	}
}

// exporterFamilies runs the exporter against redisURL and returns the
// families of its first scrape that reports redis_up 1.
func exporterFamilies(t *testing.T, bin, redisURL string) map[string]compatFamily {
	t.Helper()
	const attempts = 5 // port races only, as in the harness
	for attempt := 1; ; attempt++ {
		mfs, output, clash := runExporter(t, bin, redisURL, attempt)
		if mfs != nil {
			fams := make(map[string]compatFamily, len(mfs))
			for name, mf := range mfs {
				fams[name] = exporterFamily(mf)
			}
			return fams
		}
		if !clash || attempt == attempts {
			t.Fatalf("%s exited before serving /metrics for %s; its output:\n%s", exporterBin, redisURL, output)
		}
	}
}

// runExporter starts one exporter on a free port and polls its /metrics
// until it reports redis_up 1. If the exporter exits first, mfs is nil,
// output is what it printed and clash says whether it lost a race for its port.
// The process is killed when the test ends.
func runExporter(t *testing.T, bin, redisURL string, attempt int) (mfs map[string]*dto.MetricFamily, output string, clash bool) {
	t.Helper()
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(harness.FreePort(t)))
	logPath := filepath.Join(t.TempDir(), fmt.Sprintf("exporter-%d.log", attempt))
	out, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--redis.addr="+redisURL,
		"--web.listen-address="+listen,
		// redwire always exports total_system_memory, as the exporter does
		// with this flag; compare it rather than exclude it.
		"--include-system-metrics",
	)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("start %s: %v", exporterBin, err)
	}
	// The cleanup owns the process: it kills it and waits for the reaper.
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // a killed exporter is the normal end
		out.Close()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s %s output:\n%s", exporterBin, strings.Join(cmd.Args[1:], " "), b)
		}
	})

	httpc := &http.Client{Timeout: 2 * time.Second}
	metricsURL := "http://" + listen + "/metrics"
	harness.WaitFor(t, 10*time.Second, exporterBin+" at "+metricsURL+" to report redis_up 1", func() (bool, error) {
		select {
		case <-exited:
			return true, nil
		default:
		}
		got, err := scrapeExposition(t.Context(), httpc, metricsURL)
		if err != nil {
			return false, err
		}
		if up := gaugeValue(got["redis_up"]); up != 1 {
			return false, fmt.Errorf("redis_up is %v", up)
		}
		mfs = got
		return true, nil
	})
	if mfs != nil {
		return mfs, "", false
	}
	<-exited
	b, _ := os.ReadFile(logPath)
	return nil, string(b), strings.Contains(strings.ToLower(string(b)), "address already in use")
}

// scrapeExposition fetches and parses one text exposition.
func scrapeExposition(ctx context.Context, c *http.Client, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", url, err)
	}
	return mfs, nil
}

// gaugeValue is the value of a single-series gauge family, -1 if it is not
// one.
func gaugeValue(mf *dto.MetricFamily) float64 {
	if mf == nil || mf.GetType() != dto.MetricType_GAUGE || len(mf.Metric) != 1 {
		return -1
	}
	return mf.Metric[0].GetGauge().GetValue()
}

// exporterFamily reduces a parsed family to its type and label names. The
// parser folds a summary's _sum and _count into the family and keeps the
// quantile out of the labels; compareCompat accounts for that.
func exporterFamily(mf *dto.MetricFamily) compatFamily {
	names := map[string]bool{}
	for _, m := range mf.Metric {
		for _, lp := range m.Label {
			names[lp.GetName()] = true
		}
	}
	return compatFamily{typ: strings.ToLower(mf.GetType().String()), labels: sortedNames(names)}
}

// redwireFamilies scrapes redisURL once with a redwire Target.
func redwireFamilies(t *testing.T, redisURL string) map[string]compatFamily {
	t.Helper()
	tg, err := NewTarget(TargetConfig{Addr: redisURL}, nil)
	if err != nil {
		t.Fatalf("NewTarget(%s): %v", redisURL, err)
	}
	defer tg.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	sc, err := tg.Scrape(ctx, time.Now())
	if err != nil {
		t.Fatalf("redwire scrape of %s: %v", redisURL, err)
	}
	names := map[string]map[string]bool{}
	for _, s := range sc.Samples {
		fam := s.Labels.Get(model.MetricNameLabel)
		if names[fam] == nil {
			names[fam] = map[string]bool{}
		}
		s.Labels.Range(func(l labels.Label) {
			switch l.Name {
			case model.MetricNameLabel, "instance", "job": // the target's, not the family's
			default:
				names[fam][l.Name] = true
			}
		})
	}
	fams := make(map[string]compatFamily, len(sc.Metadata))
	for _, m := range sc.Metadata {
		fams[m.Family] = compatFamily{typ: strings.ToLower(m.Type.String()), labels: sortedNames(names[m.Family])}
	}
	return fams
}

func sortedNames(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// compatExclusion is one line of exclusions.txt: a family left out of the
// comparison, or a difference tolerated in a family still compared.
type compatExclusion struct {
	pattern string          // family name, or a prefix ending in '*'
	labels  map[string]bool // labels redwire may add to the family
	typ     string          // type redwire may have instead of the exporter's
	reason  string
}

// whole reports whether the entry leaves the family out entirely.
func (x compatExclusion) whole() bool { return x.labels == nil && x.typ == "" }

func (x compatExclusion) matches(family string) bool {
	if p, ok := strings.CutSuffix(x.pattern, "*"); ok {
		return strings.HasPrefix(family, p)
	}
	return family == x.pattern
}

// readCompatExclusions reads the exclusion list, one entry a line:
//
//	family # reason                 left out of the comparison
//	prefix* # reason                every family starting with prefix
//	family{label,...} # reason      redwire may add these labels
//	family:type # reason            redwire's type may be this one
//
// The reason is mandatory: an exclusion without one is a mismatch nobody
// decided on.
func readCompatExclusions(t *testing.T, path string) []compatExclusion {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []compatExclusion
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		entry, reason, ok := strings.Cut(line, "#")
		entry, reason = strings.TrimSpace(entry), strings.TrimSpace(reason)
		if !ok || reason == "" {
			t.Fatalf("%s:%d: %q has no \"# reason\"", path, n, line)
		}
		x := compatExclusion{pattern: entry, reason: reason}
		if name, rest, ok := strings.Cut(entry, "{"); ok {
			list, ok := strings.CutSuffix(rest, "}")
			if !ok || list == "" {
				t.Fatalf("%s:%d: %q: want family{label,...}", path, n, entry)
			}
			x.pattern, x.labels = name, map[string]bool{}
			for _, l := range strings.Split(list, ",") {
				x.labels[strings.TrimSpace(l)] = true
			}
		} else if name, typ, ok := strings.Cut(entry, ":"); ok {
			if typ == "" {
				t.Fatalf("%s:%d: %q: want family:type", path, n, entry)
			}
			x.pattern, x.typ = name, typ
		}
		if x.pattern == "" || strings.ContainsAny(x.pattern, " \t{}:") {
			t.Fatalf("%s:%d: %q is not a family name", path, n, entry)
		}
		out = append(out, x)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out
}

// compatTolerance is what the exclusions allow for one family.
type compatTolerance struct {
	labels map[string]bool
	typ    string
}

// compareCompat checks every exporter family against redwire and returns
// all differences at once, sorted by family. stale lists exclusions that
// no longer excuse anything, so that they can be dropped.
func compareCompat(ref, got map[string]compatFamily, excl []compatExclusion) (problems, stale []string) {
	for _, name := range slices.Sorted(maps.Keys(ref)) {
		want := ref[name]
		tol := compatTolerance{labels: map[string]bool{}}
		excluded := false
		for _, x := range excl {
			if !x.matches(name) {
				continue
			}
			if x.whole() {
				excluded = true
				break
			}
			for l := range x.labels {
				tol.labels[l] = true
			}
			if x.typ != "" {
				tol.typ = x.typ
			}
		}
		g, have := got[name]
		if excluded {
			if have {
				stale = append(stale, fmt.Sprintf("%s is excluded but redwire has it (redwire: %s; exporter: %s)", name, g, want))
			}
			continue
		}
		if have && tol.typ != "" && g.typ == want.typ {
			stale = append(stale, fmt.Sprintf("%s: type %s is tolerated but redwire has the exporter's %s", name, tol.typ, want.typ))
		}
		if have && len(tol.labels) > 0 && !slices.ContainsFunc(g.labels, func(l string) bool { return tol.labels[l] }) {
			stale = append(stale, fmt.Sprintf("%s: labels %v are tolerated but redwire has none of them", name, sortedNames(tol.labels)))
		}
		switch want.typ {
		case "summary":
			// redwire sends a summary as the series a Prometheus server
			// stores for a scraped one: the quantiles under the family
			// name, plus _sum and _count.
			problems = append(problems, compareOne(name, withLabel(want, "quantile"), got, tol)...)
			problems = append(problems, compareOne(name+"_sum", want, got, tol)...)
			problems = append(problems, compareOne(name+"_count", want, got, tol)...)
		case "histogram":
			problems = append(problems, compareOne(name+"_bucket", withLabel(want, "le"), got, tol)...)
			problems = append(problems, compareOne(name+"_sum", want, got, tol)...)
			problems = append(problems, compareOne(name+"_count", want, got, tol)...)
		default:
			problems = append(problems, compareOne(name, want, got, tol)...)
		}
	}
	return problems, stale
}

// compareOne compares one redwire family with what the exporter's implies.
// No exporter label may be missing; tol says which labels redwire may add
// and which other type is acceptable.
func compareOne(name string, want compatFamily, got map[string]compatFamily, tol compatTolerance) []string {
	g, ok := got[name]
	if !ok {
		return []string{fmt.Sprintf("%s: missing in redwire (exporter: %s)", name, want)}
	}
	var what []string
	if g.typ != want.typ && g.typ != tol.typ {
		what = append(what, fmt.Sprintf("type %s, exporter %s", g.typ, want.typ))
	}
	var missing, extra []string
	for _, l := range want.labels {
		if !slices.Contains(g.labels, l) {
			missing = append(missing, l)
		}
	}
	for _, l := range g.labels {
		if !slices.Contains(want.labels, l) && !tol.labels[l] {
			extra = append(extra, l)
		}
	}
	if len(missing) > 0 {
		what = append(what, fmt.Sprintf("labels %v missing", missing))
	}
	if len(extra) > 0 {
		what = append(what, fmt.Sprintf("labels %v extra", extra))
	}
	if len(what) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("%s: %s (redwire: %s; exporter: %s)", name, strings.Join(what, ", "), g, want)}
}

func withLabel(f compatFamily, l string) compatFamily {
	ls := append(slices.Clone(f.labels), l)
	slices.Sort(ls)
	return compatFamily{typ: f.typ, labels: ls}
}

// compatExtras lists redwire's families that no exporter family accounts
// for, summary and histogram parts included.
func compatExtras(ref, got map[string]compatFamily) []string {
	covered := map[string]bool{}
	for name, f := range ref {
		covered[name] = true
		if f.typ == "summary" || f.typ == "histogram" {
			for _, suffix := range []string{"_sum", "_count", "_bucket"} {
				covered[name+suffix] = true
			}
		}
	}
	var out []string
	for _, name := range slices.Sorted(maps.Keys(got)) {
		if !covered[name] {
			out = append(out, name)
		}
	}
	return out
}
