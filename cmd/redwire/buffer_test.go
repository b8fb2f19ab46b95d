package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/offline"
	"github.com/redwire/redwire/sample"
)

// fillBuffer writes scrapes of perScrape series into the "local" buffer
// file under dir, as buffer-only mode does, and returns the open store
// (the "running agent"), which the caller closes.
func fillBuffer(t *testing.T, dir string, scrapes, perScrape int) *buffer.Store {
	t.Helper()
	s, _, err := buffer.OpenStore(filepath.Join(dir, "local.bbolt"), buffer.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-10 * time.Minute)
	for k := range scrapes {
		sc := sample.NewScrape(start.Add(time.Duration(k)*10*time.Second), labels.FromStrings("instance", "cli", "job", "redis"))
		for i := range perScrape {
			sc.Gauge("redis_cli_series", "test", float64(k), "i", fmt.Sprint(i))
		}
		if _, err := s.Append(sc.Batch()); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func inspectJSON(t *testing.T, dir string) offline.StoreInspection {
	t.Helper()
	code, out, errOut := runCLI(t, "buffer", "inspect", "--buffer.path="+dir, "--json")
	var ins []offline.StoreInspection
	if code != 0 || json.Unmarshal([]byte(out), &ins) != nil || len(ins) != 1 {
		t.Fatalf("inspect: exit %d\n%s\n%s", code, out, errOut)
	}
	return ins[0]
}

// TestBufferExportReplayCLI: inspect a running agent's buffer; export
// --delete refuses while it runs and works once it stopped; replay
// pushes everything into a real Prometheus.
func TestBufferExportReplayCLI(t *testing.T) {
	const scrapes, perScrape = 6, 20
	dir := t.TempDir()
	running := fillBuffer(t, dir, scrapes, perScrape)
	in := inspectJSON(t, dir)
	if in.Name != "local" || in.Batches != scrapes || in.Samples != scrapes*perScrape || in.Series != perScrape || in.Mode != offline.ReadSnapshot {
		t.Fatalf("inspect of a running agent's buffer: %+v", in)
	}
	out := filepath.Join(t.TempDir(), "backlog.rwexport")
	code, _, errOut := runCLI(t, "buffer", "export", "--buffer.path="+dir, "-o", out, "--delete")
	if code == 0 || !strings.Contains(errOut, "stop it") {
		t.Fatalf("export --delete under a running agent: exit %d: %s", code, errOut)
	}
	running.Close()
	code, stdout, errOut := runCLI(t, "buffer", "export", "--buffer.path="+dir, "-o", out, "--endpoint=local", "--delete")
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("%d samples exported", scrapes*perScrape)) {
		t.Fatalf("export: exit %d\n%s\n%s", code, stdout, errOut)
	}
	if in := inspectJSON(t, dir); in.Batches != 0 || in.Mode != offline.ReadLocked {
		t.Fatalf("after export --delete: %+v", in)
	}

	prom := harness.StartPrometheus(t)
	code, stdout, errOut = runCLI(t, "replay", out, "--remote-write.url="+prom.WriteURL(), "--remote-write.header=X-Scope-OrgID=edge")
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("%d samples sent", scrapes*perScrape)) {
		t.Fatalf("replay: exit %d\n%s\n%s", code, stdout, errOut)
	}
	vec, err := prom.Query(t.Context(), fmt.Sprintf(`count(count_over_time(redis_cli_series{instance="cli"}[1h]) == %d)`, scrapes))
	if err != nil || len(vec) != 1 || vec[0].Value != perScrape {
		t.Fatalf("receiver: %v %v", vec, err)
	}

	raw, _ := os.ReadFile(out)
	raw[len(raw)/2] ^= 0x01
	bad := filepath.Join(t.TempDir(), "bad.rwexport")
	os.WriteFile(bad, raw, 0o600)
	code, _, errOut = runCLI(t, "replay", bad, "--remote-write.url="+prom.WriteURL())
	if code == 0 || !strings.Contains(errOut, "corrupt at offset") {
		t.Fatalf("replay of a damaged file: exit %d: %s", code, errOut)
	}
}
