package agent

import (
	"bytes"
	"context"
	"fmt"
	"html/template"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The browser test loads the status page in a real headless Chromium
// (Debian's chromium package; `make deps` installs it), checks the DOM
// the browser built, and takes screenshots as a desktop and as a phone.
// A missing chromium fails the test: it never skips.
//
// The screenshots are kept for a person to look at, in the directory
// named by REDWIRE_TEST_ARTIFACTS if set (CI can collect it), else in
// agent/testdata/artifacts/, which git ignores. Each run overwrites them.

// chromiumTimeout only ends a hung browser; reaching it is a failure.
const chromiumTimeout = 2 * time.Minute

// artifactDir is where tests keep what a person may want to look at.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("REDWIRE_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("testdata", "artifacts")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("test artifacts: %v", err)
	}
	return dir
}

// chromium runs headless Chromium on url with the given flags and
// returns what it printed on stdout.
func chromium(t *testing.T, url string, flags ...string) string {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found in PATH: install the Debian package chromium (make deps does)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), chromiumTimeout)
	defer cancel()
	args := append([]string{
		"--headless",
		"--no-sandbox", // the tests run as root, where the sandbox refuses to start
		"--user-data-dir=" + t.TempDir(),
		"--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
		"--force-device-scale-factor=1",
		// The page is on loopback; the browser has no business elsewhere.
		"--no-proxy-server", "--no-first-run", "--no-default-browser-check",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-default-apps", "--disable-extensions", "--disable-domain-reliability",
		"--disable-client-side-phishing-detection", "--no-pings", "--metrics-recording-only",
	}, flags...)
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\nstderr:\n%s", strings.Join(flags, " "), err, stderr.String())
	}
	return stdout.String()
}

// TestStatusPageInChromium: the page loads in a real browser, the DOM it
// builds has a row for every target the API lists and a section for the
// endpoint, and the desktop and phone screenshots are real pictures.
func TestStatusPageInChromium(t *testing.T) {
	rig := startStatusRig(t)
	targets, err := apiGet[[]targetInfo](rig.base + "/api/v1/targets")
	if err != nil {
		t.Fatal(err)
	}

	dom := chromium(t, rig.base+"/", "--dump-dom")
	if !strings.Contains(dom, "<title>redwire: ") {
		t.Fatalf("the browser did not load the status page; DOM:\n%.2000s", dom)
	}
	for _, ti := range targets {
		row := fmt.Sprintf(`<tr class="target" data-instance="%s">`, template.HTMLEscapeString(ti.Instance))
		if !strings.Contains(dom, row) {
			t.Errorf("the browser's DOM has no row for target %s", ti.Instance)
		}
	}
	if len(targets) != 2 {
		t.Errorf("/api/v1/targets lists %d targets, want 2", len(targets))
	}
	if !strings.Contains(dom, fmt.Sprintf(`data-endpoint="%s"`, template.HTMLEscapeString(rig.endpoint))) {
		t.Errorf("the browser's DOM has no section for endpoint %s", rig.endpoint)
	}
	if strings.Count(dom, `<tr class="change">`) != 3 {
		t.Errorf("the browser's DOM has %d changes, want the 3 of the outage", strings.Count(dom, `<tr class="change">`))
	}

	dir := artifactDir(t)
	for _, view := range []struct {
		name          string
		width, height int
	}{{"desktop", 1280, 1100}, {"phone", 390, 2000}} {
		file := filepath.Join(dir, "statuspage-"+view.name+".png")
		os.Remove(file)
		chromium(t, rig.base+"/", "--screenshot="+file, fmt.Sprintf("--window-size=%d,%d", view.width, view.height))
		checkScreenshot(t, file, view.width, view.height)
		t.Logf("screenshot (%s): %s", view.name, file)
	}
}

// checkScreenshot fails the test unless file is a PNG of the given size
// with something drawn on it: more than the page's background.
func checkScreenshot(t *testing.T, file string, width, height int) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot %s: %v", file, err)
	}
	if b := img.Bounds(); b.Dx() != width || b.Dy() != height {
		t.Errorf("screenshot %s is %dx%d, want %dx%d", file, b.Dx(), b.Dy(), width, height)
	}
	if n := colours(img); n < 3 {
		t.Errorf("screenshot %s has %d colours: nothing was drawn", file, n)
	}
}

// colours counts the distinct colours of img.
func colours(img image.Image) int {
	seen := map[color.RGBA]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			seen[color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8), uint8(a >> 8)}] = true
		}
	}
	return len(seen)
}
