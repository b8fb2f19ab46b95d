package configs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// promtool resolves promtool or fails the test: as the harness, this
// package never skips, so a green run means the rules were checked.
func promtool(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found in PATH: run `make deps` (it installs the Debian package prometheus, which has promtool) or apt-get install prometheus")
	}
	return bin
}

func ruleFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("rules/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule files under rules/: %v", err)
	}
	return files
}

func ruleTestFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("rules/tests/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no promtool tests under rules/tests/: %v", err)
	}
	return files
}

func TestPromtoolCheckRules(t *testing.T) {
	out, err := exec.Command(promtool(t), append([]string{"check", "rules"}, ruleFiles(t)...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

func TestPromtoolTestRules(t *testing.T) {
	out, err := exec.Command(promtool(t), append([]string{"test", "rules"}, ruleTestFiles(t)...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

// rule is the part of a Prometheus rule this package checks; promtool
// check rules validates the files fully (TestPromtoolCheckRules), and
// expressions are parsed with promql/parser (promql_test.go).
type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// alertRule is one alerting rule and the file it is in.
type alertRule struct {
	file string
	rule rule
}

// loadRules reads every rule of every rule file.
func loadRules(t *testing.T) []alertRule {
	t.Helper()
	var rules []alertRule
	for _, f := range ruleFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rf struct {
			Groups []struct {
				Name  string `yaml:"name"`
				Rules []rule `yaml:"rules"`
			} `yaml:"groups"`
		}
		dec := yaml.NewDecoder(strings.NewReader(string(data)))
		dec.KnownFields(false)
		if err := dec.Decode(&rf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				rules = append(rules, alertRule{file: f, rule: r})
			}
		}
	}
	return rules
}

// loadAlerts is loadRules without the recording rules.
func loadAlerts(t *testing.T) []alertRule {
	t.Helper()
	var alerts []alertRule
	for _, r := range loadRules(t) {
		if r.rule.Alert != "" {
			alerts = append(alerts, r)
		}
	}
	if len(alerts) == 0 {
		t.Fatal("no alerting rules")
	}
	return alerts
}

// TestAlertsAreDocumented wants every alert to say how bad it is and what
// to look at, naming the instance it is about.
func TestAlertsAreDocumented(t *testing.T) {
	seen := map[string]string{}
	for _, a := range loadAlerts(t) {
		r := a.rule
		if prev, dup := seen[r.Alert]; dup {
			t.Errorf("%s: alert %s also in %s", a.file, r.Alert, prev)
		}
		seen[r.Alert] = a.file
		switch r.Labels["severity"] {
		case "critical", "warning", "info":
		default:
			t.Errorf("%s: %s: severity label %q, want critical, warning or info", a.file, r.Alert, r.Labels["severity"])
		}
		for _, k := range []string{"summary", "description"} {
			if !strings.Contains(r.Annotations[k], "{{ $labels.") {
				t.Errorf("%s: %s: annotation %s %q names no label", a.file, r.Alert, k, r.Annotations[k])
			}
		}
	}
}

// promtoolTests is the part of a promtool unit test file this package
// checks.
type promtoolTests struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name          string `yaml:"name"`
		AlertRuleTest []struct {
			Alertname string           `yaml:"alertname"`
			ExpAlerts []map[string]any `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// TestEveryAlertIsUnitTested wants every alert to be seen firing and seen
// quiet (an empty exp_alerts) by some promtool test, and every rule file to
// be loaded by one: an alert that can never fire, or never stop, is caught
// there.
func TestEveryAlertIsUnitTested(t *testing.T) {
	fires, quiet, loaded := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, f := range ruleTestFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var pt promtoolTests
		if err := yaml.Unmarshal(data, &pt); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, rf := range pt.RuleFiles {
			loaded[filepath.Clean(filepath.Join(filepath.Dir(f), rf))] = true
		}
		for _, tc := range pt.Tests {
			for _, at := range tc.AlertRuleTest {
				if len(at.ExpAlerts) > 0 {
					fires[at.Alertname] = true
				} else {
					quiet[at.Alertname] = true
				}
			}
		}
	}
	for _, f := range ruleFiles(t) {
		if !loaded[filepath.Clean(f)] {
			t.Errorf("%s: no promtool test under rules/tests/ loads it", f)
		}
	}
	for _, a := range loadAlerts(t) {
		if !fires[a.rule.Alert] {
			t.Errorf("%s: alert %s is never tested firing", a.file, a.rule.Alert)
		}
		if !quiet[a.rule.Alert] {
			t.Errorf("%s: alert %s is never tested quiet (exp_alerts empty)", a.file, a.rule.Alert)
		}
	}
}
