package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// What the .deb installs; host_test.go checks them on the machine.
const (
	binPath   = "/usr/bin/redwire"
	unitPath  = "/usr/lib/systemd/system/redwire.service"
	confDir   = "/etc/redwire"
	confPath  = "/etc/redwire/redwire.yml"
	bufferDir = "/var/lib/redwire"
	// systemctl enable's link (WantedBy=multi-user.target).
	wantsLink = "/etc/systemd/system/multi-user.target.wants/redwire.service"
)

// The test builds with a `git describe` VERSION of a tag and commits after
// it, so the package's version shows scripts/release.sh's mapping, and
// `redwire --version` shows the flags make build and make release share.
const (
	testVersion    = "v1.2.3-4-gdeadbee"
	testDebVersion = "1.2.3+4.gdeadbee"
)

// TestDebInstallConfigureRemovePurge builds the .deb for this machine's
// architecture through make release and walks it through dpkg's life
// cycle on this machine: install, reinstall over an edited config and a
// filled buffer, remove, purge. After each step it checks files, owners
// and modes, the redwire system user, the unit (systemd-analyze verify)
// and the binary. It runs as root (make test and CI do); it fails, never
// skips, where dpkg or a tool it runs is missing. It refuses to start
// where a redwire package, user or directory already is, so it never
// purges an install it did not make, and a cleanup purges its own even
// when a check fails.
func TestDebInstallConfigureRemovePurge(t *testing.T) {
	requireTools(t)
	if os.Geteuid() != 0 {
		t.Fatal("the .deb test installs a package with dpkg -i: run it as root (make test and CI do)")
	}
	requireNoRedwire(t)

	deb := buildDeb(t, t.TempDir())
	checkArchive(t, deb)

	t.Cleanup(func() {
		// t.Context is done by now: these commands run without it.
		status, err := packageStatus()
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		if status == "not-installed" {
			return
		}
		if out, err := exec.Command("dpkg", "--purge", "redwire").CombinedOutput(); err != nil {
			t.Errorf("cleanup: dpkg --purge redwire (status %s): %v\n%s", status, err, out)
		}
	})

	t.Log("dpkg -i: a first install")
	run(t, "dpkg", "-i", deb)
	checkInstalled(t)
	checkUser(t)
	checkUnitVerifies(t)
	checkBinary(t)
	checkAccess(t)
	// As an admin would, once the config names the receiver; enable works
	// without a running systemd too (it only links the unit).
	run(t, "systemctl", "enable", "redwire.service")
	requireExists(t, wantsLink, "systemctl enable links the unit")

	// A reinstall runs the maintainer scripts' upgrade path.
	t.Log("dpkg -i again: the admin's config and the buffer survive an upgrade")
	edit := "\n# edited on the host\n"
	appendFile(t, confPath, edit)
	probe := filepath.Join(bufferDir, "probe")
	run(t, "setpriv", "--reuid=redwire", "--regid=redwire", "--init-groups", "touch", probe)
	run(t, "dpkg", "-i", deb)
	checkInstalled(t)
	if data, err := os.ReadFile(confPath); err != nil || !strings.HasSuffix(string(data), edit) {
		t.Errorf("%s after a reinstall: the admin's edit is gone (err %v); a conffile keeps it", confPath, err)
	}
	requireExists(t, probe, "a reinstall keeps the buffer")

	t.Log("dpkg -r: the program goes, the config, the buffer and the user stay")
	run(t, "dpkg", "-r", "redwire")
	if status := mustStatus(t); status != "config-files" {
		t.Errorf("after dpkg -r: status %q, want config-files", status)
	}
	requireGone(t, binPath, unitPath)
	requireExists(t, confPath, "dpkg -r keeps the conffile")
	requireExists(t, probe, "dpkg -r keeps the buffer")
	if !userExists(t, "passwd") {
		t.Error("after dpkg -r: the user redwire is gone; it owns the buffer, which stays until purge")
	}

	t.Log("dpkg --purge: nothing is left")
	run(t, "dpkg", "--purge", "redwire")
	if status := mustStatus(t); status != "not-installed" {
		t.Errorf("after dpkg --purge: status %q, want not-installed", status)
	}
	requireGone(t, binPath, unitPath, confDir, bufferDir, wantsLink)
	if userExists(t, "passwd") {
		t.Error("after dpkg --purge: the user redwire is still there")
	}
	if userExists(t, "group") {
		t.Error("after dpkg --purge: the group redwire is still there")
	}
}

// TestDebVersion checks how scripts/release.sh turns `git describe` into
// a Debian version: dpkg must take it, and it must sort as releases do.
func TestDebVersion(t *testing.T) {
	cases := map[string]string{
		"v1.2.0":                  "1.2.0",
		"v1.2.0-rc1":              "1.2.0~rc1",
		testVersion:               testDebVersion,
		"v1.2.3-4-gdeadbee-dirty": "1.2.3+4.gdeadbee.dirty",
		"023d829":                 "0.0.0+git.023d829",
		"023d829-dirty":           "0.0.0+git.023d829+dirty",
	}
	for in, want := range cases {
		if got := strings.TrimSpace(run(t, "../scripts/release.sh", "deb-version", in)); got != want {
			t.Errorf("deb-version %q = %q, want %q", in, got, want)
		}
	}
	if out, err := exec.Command("../scripts/release.sh", "deb-version", "v1.2 beta").CombinedOutput(); err == nil {
		t.Errorf("deb-version of a version with a space: %q, want an error", out)
	}
	// What a release tag becomes sorts after its release candidates and
	// before the commits that follow it.
	run(t, "dpkg", "--compare-versions", "1.2.0~rc1", "lt", "1.2.0")
	run(t, "dpkg", "--compare-versions", "1.2.0", "lt", "1.2.0+3.gabc1234")
}

// buildDeb runs make release for this machine's architecture into dist,
// checks SHA256SUMS there, and returns the .deb.
func buildDeb(t *testing.T, dist string) string {
	t.Helper()
	arches := map[string][2]string{"amd64": {"amd64", "amd64"}, "arm64": {"arm64", "arm64"}, "arm": {"armv7", "armhf"}}
	arch, ok := arches[runtime.GOARCH]
	if !ok {
		t.Fatalf("make release builds no .deb for %s (only amd64, arm64, arm)", runtime.GOARCH)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), "make", "-C", root, "--no-print-directory", "release",
		"RELEASE_ARCHES="+arch[0], "DIST="+dist, "VERSION="+testVersion)
	// Not the make test that may run us: its flags and job server are its own.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}

	wantFiles := []string{"SHA256SUMS", "redwire-linux-" + arch[0], "redwire_" + testDebVersion + "_" + arch[1] + ".deb"}
	entries, err := os.ReadDir(dist)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, " ") != strings.Join(wantFiles, " ") {
		t.Fatalf("make release wrote %q, want %q", got, wantFiles)
	}
	sums := exec.CommandContext(t.Context(), "sha256sum", "--check", "--strict", "SHA256SUMS")
	sums.Dir = dist
	out, err := sums.CombinedOutput()
	if err != nil || strings.Count(string(out), ": OK\n") != len(wantFiles)-1 {
		t.Fatalf("sha256sum --check SHA256SUMS: %v, want every other file OK:\n%s", err, out)
	}
	return filepath.Join(dist, wantFiles[2])
}

// checkArchive checks the .deb's control fields and every entry of its
// data: a file added to nfpm.yaml has to be added here too.
func checkArchive(t *testing.T, deb string) {
	t.Helper()
	fields := run(t, "dpkg-deb", "--field", deb, "Package", "Version", "Depends")
	for _, want := range []string{"Package: redwire\n", "Version: " + testDebVersion + "\n", "Depends: passwd\n"} {
		if !strings.Contains(fields, want) {
			t.Errorf("%s control: no %q in\n%s", deb, want, fields)
		}
	}
	// Unpacked before the user exists, so everything is root's; postinst
	// hands out the rest (checkInstalled has the owners).
	want := map[string]string{
		"./usr/bin/redwire":                                     "-rwxr-xr-x root/root",
		"./usr/lib/systemd/system/redwire.service":              "-rw-r--r-- root/root",
		"./etc/redwire/":                                        "drwxr-x--- root/root",
		"./etc/redwire/redwire.yml":                             "-rw-r----- root/root",
		"./var/lib/redwire/":                                    "drwx------ root/root",
		"./usr/share/doc/redwire/examples/redwire.example.yml":  "-rw-r--r-- root/root",
		"./usr/share/doc/redwire/examples/edge-buffer-only.yml": "-rw-r--r-- root/root",
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "--contents", deb)), "\n") {
		// -rwxr-xr-x root/root  24326306 2026-12-02 09:37 ./usr/bin/redwire
		f := strings.Fields(line)
		if len(f) != 6 {
			t.Errorf("%s: unexpected entry %q", deb, line)
			continue
		}
		path, got := f[5], f[0]+" "+f[1]
		seen[path] = true
		w, ok := want[path]
		switch {
		case ok && got != w:
			t.Errorf("%s: %s is %q, want %q", deb, path, got, w)
		// The parents (/usr/, /var/lib/, ...) exist already on any host and
		// dpkg leaves them as they are, but a package must not say otherwise.
		case !ok && got != "drwxr-xr-x root/root":
			t.Errorf("%s: unexpected entry %q", deb, line)
		}
	}
	for path := range want {
		if !seen[path] {
			t.Errorf("%s: no %s", deb, path)
		}
	}
}
