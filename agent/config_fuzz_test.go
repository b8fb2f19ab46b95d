package agent

import (
	"bytes"
	"math"
	"regexp"
	"strings"
	"testing"
)

// FuzzConfigLoad feeds arbitrary bytes to Parse and Finalize, as LoadFile
// and every reload do. Nothing may panic; the bytes are refused with a
// non-empty error or make a config, never both; a config Finalize accepts
// has the numbers it checks in range, and prints (String, what
// `redwire check-config` shows) as YAML that loads and validates again and
// prints the same. A secret must not show in an error: with the canary as
// the one password in the input, no error may quote it. Seeds are the
// example configs and broken variants; interesting inputs found by fuzzing
// are kept in testdata/fuzz/FuzzConfigLoad.
func FuzzConfigLoad(f *testing.F) {
	for _, seed := range []string{
		"",
		"global: {scrape_interval: 5s}\n",
		"targets:\n  - addr: redis://user:" + canary + "@127.0.0.1:6379\n  - addr: redis://127.0.0.1:6380\n    password: " + canary + "\n",
		"remote_write:\n  - url: https://u:" + canary + "@example.net/api/v1/write\n    basic_auth: {username: u, password: " + canary + "}\n",
		"remote_write:\n  - url: \"http://u:" + canary + "@h/%zz\"\n",
		"sentinels:\n  - master_name: m\n    addrs: [\"redis://:" + canary + "@10.0.0.1:26379\"]\n    sentinel_password: " + canary + "\n",
		"registration:\n  etcd: {endpoints: [\"http://u:" + canary + "@h:2379\", \"https://h:2379\"]}\n",
		"replay: {max_samples_per_second: .nan}\n",
		"global:\n  scrape_interval: 5s\n  scrape_timeout: 6s\n",
		"targets:\n  - addr: redis://a:1\n  - addr: redis://a:1\n",
		"global: {external_labels: {\"bad-name\": x}}\n",
		"degraded: {metrics: \"(\"}\n",
		"targets: [{addr: redis://h:99999}]\nremote_writes: []\n",
		"clusters:\n  - name: c\n    seeds: [redis://10.0.0.1:7000]\n  - name: c\n    seeds: [redis://10.0.0.2:7000]\n",
		"- a\n- b\n",
		"{{{",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			if cfg != nil {
				t.Fatal("Parse returned both a config and an error")
			}
			checkErrorHidesCanary(t, data, "", err)
			return
		}
		printed := cfg.String()
		if err := cfg.Finalize(); err != nil {
			if err.Error() == "" {
				t.Fatal("Finalize failed with an empty error")
			}
			checkErrorHidesCanary(t, data, printed, err)
			return
		}
		g := cfg.Global
		if g.ScrapeInterval <= 0 || g.ScrapeTimeout <= 0 || g.ScrapeTimeout > g.ScrapeInterval ||
			cfg.Degraded.Interval < g.ScrapeInterval || g.MaxConcurrentScrapes < 1 || cfg.Degraded.FailureThreshold < 1 ||
			len(cfg.Targets)+len(cfg.Sentinels)+len(cfg.Clusters) == 0 && cfg.TargetsFile == "" ||
			math.IsNaN(cfg.Replay.MaxSamplesPerSecond) || cfg.Replay.MaxSamplesPerSecond < 0 {
			t.Fatalf("accepted a config out of range:\n%s", cfg)
		}
		out := cfg.String()
		again, err := Parse([]byte(out))
		if err != nil {
			t.Fatalf("printed config does not parse: %v\n%s", err, out)
		}
		if err := again.Finalize(); err != nil {
			t.Fatalf("printed config does not validate: %v\n%s", err, out)
		}
		if out2 := again.String(); out2 != out {
			t.Fatalf("printed config prints differently once loaded:\n%s\nthen:\n%s", out, out2)
		}
	})
}

// secretValue finds the canary where the input gives it as a password: a
// password-like key's value (a colon and no blank after it is part of a
// key instead), or the password of a URL's userinfo.
var secretValue = regexp.MustCompile(`(password|token|credentials)["']?\s*:(\s+["']?|["'])` + regexp.QuoteMeta(canary) +
	`|://[^\s/@"']*:[^\s/@"']*` + regexp.QuoteMeta(canary) + `[^\s/@"']*@`)

// checkErrorHidesCanary fails if err quotes the canary while the input
// holds it once, as a secret. printed is the parsed config as String
// prints it, "" if the input did not parse: a canary String hides is a
// secret wherever it stands; one it shows is not (a name, a label).
func checkErrorHidesCanary(t *testing.T, data []byte, printed string, err error) {
	t.Helper()
	if bytes.Count(data, []byte(canary)) != 1 || !strings.Contains(err.Error(), canary) {
		return
	}
	if printed != "" && strings.Contains(printed, canary) || printed == "" && !secretValue.Match(data) {
		return
	}
	t.Errorf("the error shows the secret: %v", err)
}
