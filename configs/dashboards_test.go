package configs

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// notScraped are names the rules or dashboards use that the real redwire
// of redwireExports cannot show, each with the job it is sent with. Keep
// it short: every entry is a name nothing checks here.
var notScraped = map[string]string{
	// Sent only by nodes of a Redis Cluster; sources/redis/cluster_test.go
	// checks it against redis_exporter on a real cluster.
	"redis_cluster_state": "redis",
}

// query is one PromQL expression and where it was found.
type query struct {
	where string
	expr  string
}

func dashboardFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("dashboards/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards under dashboards/: %v", err)
	}
	return files
}

// grafanaVars are Grafana's variables: $name, ${name}, ${name:format},
// [[name]].
var grafanaVars = regexp.MustCompile(`\$\{[a-zA-Z0-9_]+(:[a-zA-Z0-9_]+)?\}|\$[a-zA-Z0-9_]+|\[\[[a-zA-Z0-9_]+\]\]`)

// substitute makes a Grafana query PromQL: interval variables become
// durations, every other variable (used in label matchers) a plain value.
func substitute(expr string) string {
	for _, v := range []string{"$__rate_interval", "$__interval", "$__range", "${__rate_interval}", "${__interval}", "${__range}"} {
		expr = strings.ReplaceAll(expr, v, "5m")
	}
	for _, v := range []string{"$__range_s", "$__interval_ms"} {
		expr = strings.ReplaceAll(expr, v, "300")
	}
	return grafanaVars.ReplaceAllString(expr, "x")
}

// labelValues matches Grafana's Prometheus variable functions that hold a
// selector or an expression.
var labelValues = regexp.MustCompile(`^\s*(label_values|query_result)\((.*)\)\s*$`)

// variableQuery returns the PromQL in a template variable's query, if any.
func variableQuery(q string) (string, bool) {
	m := labelValues.FindStringSubmatch(q)
	if m == nil {
		return "", false
	}
	if m[1] == "query_result" {
		return m[2], true
	}
	// label_values(selector, label) or label_values(label).
	i := strings.LastIndex(m[2], ",")
	if i < 0 {
		return "", false
	}
	return m[2][:i], true
}

// dashboardQueries returns every expression of a dashboard: panel targets,
// rows' nested panels, and template variable queries.
func dashboardQueries(t *testing.T, file string) (queries []query, board map[string]any) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &board); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				if s, ok := c.(string); ok && k == "expr" {
					queries = append(queries, query{where: file + ": " + path, expr: substitute(s)})
					continue
				}
				walk(path+"."+k, c)
			}
		case []any:
			for i, c := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), c)
			}
		}
	}
	walk("", board["panels"])
	for _, v := range templateVars(board) {
		q := v["query"]
		if m, ok := q.(map[string]any); ok {
			q = m["query"]
		}
		if s, ok := q.(string); ok && v["type"] == "query" {
			if e, ok := variableQuery(s); ok {
				queries = append(queries, query{where: fmt.Sprintf("%s: variable %v", file, v["name"]), expr: substitute(e)})
			} else {
				t.Errorf("%s: variable %v: query %q is not label_values(selector, label) or query_result(expr)", file, v["name"], s)
			}
		}
	}
	return queries, board
}

func templateVars(board map[string]any) []map[string]any {
	var out []map[string]any
	tpl, _ := board["templating"].(map[string]any)
	list, _ := tpl["list"].([]any)
	for _, v := range list {
		if m, ok := v.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func ruleQueries(t *testing.T) []query {
	t.Helper()
	var qs []query
	for _, r := range loadRules(t) {
		qs = append(qs, query{where: r.file + ": " + r.rule.Alert + r.rule.Record, expr: r.rule.Expr})
	}
	return qs
}

func allQueries(t *testing.T) []query {
	t.Helper()
	qs := ruleQueries(t)
	for _, f := range dashboardFiles(t) {
		dq, _ := dashboardQueries(t, f)
		qs = append(qs, dq...)
	}
	return qs
}

// TestDashboardsAreParametrised wants the data source, job and instance to
// be chosen on the dashboard, and every panel to use the chosen source.
func TestDashboardsAreParametrised(t *testing.T) {
	for _, f := range dashboardFiles(t) {
		qs, board := dashboardQueries(t, f)
		if len(qs) == 0 {
			t.Errorf("%s: no queries", f)
		}
		vars := map[string]map[string]any{}
		for _, v := range templateVars(board) {
			vars[fmt.Sprint(v["name"])] = v
		}
		if v := vars["datasource"]; v == nil || v["type"] != "datasource" || v["query"] != "prometheus" {
			t.Errorf("%s: want a datasource variable of type prometheus, got %v", f, v)
		}
		for _, name := range []string{"job", "instance"} {
			if vars[name] == nil {
				t.Errorf("%s: no %s variable", f, name)
			}
		}
		if board["uid"] == nil || board["title"] == nil {
			t.Errorf("%s: want uid and title", f)
		}
		data, _ := os.ReadFile(f)
		var raw struct{ Panels []map[string]any }
		_ = json.Unmarshal(data, &raw)
		for _, p := range raw.Panels {
			if p["type"] == "row" {
				continue
			}
			ds, _ := p["datasource"].(map[string]any)
			if ds["uid"] != "${datasource}" {
				t.Errorf("%s: panel %q: datasource %v, want uid ${datasource}", f, p["title"], p["datasource"])
			}
			targets, _ := p["targets"].([]any)
			for _, tg := range targets {
				e, _ := tg.(map[string]any)["expr"].(string)
				if !strings.Contains(e, `instance=~"$instance"`) {
					t.Errorf("%s: panel %q: %q does not follow the instance variable", f, p["title"], e)
				}
			}
		}
	}
}

// TestDashboardQueriesParse has promtool parse every dashboard expression,
// as recording rules of a throwaway rule file.
func TestDashboardQueriesParse(t *testing.T) {
	type rec struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rec
	var where []string
	for _, f := range dashboardFiles(t) {
		qs, _ := dashboardQueries(t, f)
		for i, q := range qs {
			rules = append(rules, rec{Record: fmt.Sprintf("dashboard:query_%d:%d", len(where), i), Expr: q.expr})
			where = append(where, q.where)
		}
	}
	doc := map[string]any{"groups": []any{map[string]any{"name": "dashboards", "rules": rules}}}
	data, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dashboards.rules.yml")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool(t), "check", "rules", file).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules on the dashboards' queries: %v\n%s\n(rule N is query N of: %q)", err, out, where)
	}
}

// TestQueriedMetricsExist checks every metric name a rule or dashboard
// queries against what a real redwire pushes, and that a rule's job="..."
// is the job redwire sends the metric with.
func TestQueriedMetricsExist(t *testing.T) {
	qs := allQueries(t)
	got := redwireExports(t)
	for name, job := range notScraped {
		if got[name][job] {
			t.Logf("%s is now pushed with job=%s: remove it from notScraped", name, job)
		}
		got.add(name, job)
	}
	used := map[string]bool{}
	for _, q := range qs {
		names, err := metricNames(q.expr)
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("%s: %q selects no metric", q.where, q.expr)
		}
		for _, n := range names {
			used[n] = true
			if got[n] == nil {
				t.Errorf("%s: %s is not a metric redwire sends (in %q)", q.where, n, q.expr)
			}
		}
		for n, jobs := range jobMatchers(q.expr) {
			for _, j := range jobs {
				if got[n] != nil && !got[n][j] {
					t.Errorf("%s: %s{job=%q}, but redwire sends it with job %v", q.where, n, j, keys(got[n]))
				}
			}
		}
	}
	for name := range notScraped {
		if !used[name] {
			t.Errorf("notScraped lists %s, which no rule or dashboard uses", name)
		}
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return slices.Clip(out)
}
