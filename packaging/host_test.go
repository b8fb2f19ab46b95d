package packaging

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The host side of the .deb test: what it needs, and what it reads back
// from dpkg, the user database and the file system.

// requireTools fails the test, naming the Debian package to install, for
// each tool the .deb test runs that this machine lacks.
func requireTools(t *testing.T) {
	t.Helper()
	tools := [][2]string{
		{"dpkg", "dpkg"}, {"dpkg-deb", "dpkg"}, {"dpkg-query", "dpkg"}, {"make", "make"},
		{"getent", "libc-bin"}, {"useradd", "passwd"}, {"setpriv", "util-linux"},
		{"systemd-analyze", "systemd"}, {"systemctl", "systemd"}, {"sha256sum", "coreutils"},
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool[0]); err != nil {
			t.Errorf("%s not installed (Debian package %s): the .deb test runs it", tool[0], tool[1])
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// requireNoRedwire fails the test unless this machine has no trace of
// redwire that its purge would remove: a package, the user or group, the
// config or buffer directory. Those belong to someone else (a real
// install, or one made by hand after the unit's comment), and purge
// deletes them all, unsent samples included.
func requireNoRedwire(t *testing.T) {
	t.Helper()
	if status := mustStatus(t); status != "not-installed" {
		t.Fatalf("a redwire package is on this machine (dpkg status %q) that this test did not install; "+
			"it installs and purges its own, so it stops here rather than purge that one. "+
			"If it is what an interrupted run of this test left, `dpkg --purge redwire` removes it", status)
	}
	for _, db := range []string{"passwd", "group"} {
		if userExists(t, db) {
			t.Fatalf("this machine has a redwire entry in %s but no redwire package: purging the test's package would delete it; "+
				"run the test where no redwire user or group exists", db)
		}
	}
	for _, dir := range []string{confDir, bufferDir} {
		if _, err := os.Lstat(dir); err == nil {
			t.Fatalf("%s exists but no redwire package is installed: purging the test's package would delete it and what is in it; "+
				"run the test where it does not exist", dir)
		}
	}
}

// packageStatus returns dpkg's status of the redwire package: installed,
// config-files, not-installed (also when dpkg never heard of it), or a
// state a failed script left (half-configured, ...). It takes no
// testing.T so that a cleanup, whose t.Context is done, can call it.
func packageStatus() (string, error) {
	out, err := exec.Command("dpkg-query", "--show", "--showformat=${db:Status-Status}", "redwire").Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 1 {
		return "not-installed", nil // "no packages found matching redwire"
	}
	if err != nil {
		return "", fmt.Errorf("dpkg-query --show redwire: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

func mustStatus(t *testing.T) string {
	t.Helper()
	status, err := packageStatus()
	if err != nil {
		t.Fatal(err)
	}
	return status
}

// run runs a command and returns what it printed; a failure fails the test.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// userExists says whether the user database db (passwd, group or shadow)
// has an entry redwire.
func userExists(t *testing.T, db string) bool {
	t.Helper()
	err := exec.CommandContext(t.Context(), "getent", db, "redwire").Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 2 {
		return false // "key could not be found"
	}
	if err != nil {
		t.Fatalf("getent %s redwire: %v", db, err)
	}
	return true
}

// checkInstalled checks dpkg's record of the package and the owner, group
// and mode of everything the agent runs, reads or writes. The directory
// modes are the unit's own (systemd warns about, and does not fix, a
// StateDirectory or ConfigurationDirectory whose mode differs), so the
// package and the unit cannot drift apart.
func checkInstalled(t *testing.T) {
	t.Helper()
	if status := mustStatus(t); status != "installed" {
		t.Fatalf("dpkg status %q, want installed", status)
	}
	if v := run(t, "dpkg-query", "--show", "--showformat=${Version}", "redwire"); v != testDebVersion {
		t.Errorf("installed version %q, want %q", v, testDebVersion)
	}
	// " /etc/redwire/redwire.yml <md5>" per conffile.
	if c := run(t, "dpkg-query", "--show", "--showformat=${Conffiles}", "redwire"); !strings.Contains(c, " "+confPath+" ") {
		t.Errorf("dpkg does not treat %s as a conffile (conffiles: %q)", confPath, c)
	}

	unit := unitSettings(t, unitPath)
	for _, k := range []string{"StateDirectory", "ConfigurationDirectory"} {
		if unit[k] != "redwire" {
			t.Errorf("%s: %s=%q, want redwire (the directories this test checks)", unitPath, k, unit[k])
		}
	}
	want := []struct {
		path         string
		mode         fs.FileMode
		owner, group string
	}{
		{binPath, 0o755, "root", "root"},
		{unitPath, 0o644, "root", "root"},
		// Root's, so the agent cannot rewrite what it is told to do; the
		// group lets it read them, and no one else (secrets go here).
		{confDir, fs.ModeDir | unitMode(t, unit, "ConfigurationDirectoryMode"), "root", "redwire"},
		{confPath, 0o640, "root", "redwire"},
		{bufferDir, fs.ModeDir | unitMode(t, unit, "StateDirectoryMode"), "redwire", "redwire"},
	}
	for _, w := range want {
		fi, err := os.Lstat(w.path)
		if err != nil {
			t.Error(err)
			continue
		}
		mode := fi.Mode() & (fs.ModeType | fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		st := fi.Sys().(*syscall.Stat_t)
		owner, group := userName(st.Uid), groupName(st.Gid)
		if mode != w.mode || owner != w.owner || group != w.group {
			t.Errorf("%s is %v %s:%s, want %v %s:%s", w.path, mode, owner, group, w.mode, w.owner, w.group)
		}
	}
}

// checkUser checks that redwire is a system user (a uid below the first
// login user's, a locked password, no login shell) whose home is the
// buffer and whose primary group is redwire.
func checkUser(t *testing.T) {
	t.Helper()
	// redwire:x:999:995:redwire agent:/var/lib/redwire:/usr/sbin/nologin
	pw := strings.Split(strings.TrimSpace(run(t, "getent", "passwd", "redwire")), ":")
	if len(pw) != 7 {
		t.Fatalf("getent passwd redwire: %q", pw)
	}
	uid, err := strconv.Atoi(pw[2])
	if err != nil {
		t.Fatalf("getent passwd redwire: uid %q: %v", pw[2], err)
	}
	if uidMin := loginUIDMin(t); uid <= 0 || uid >= uidMin {
		t.Errorf("redwire has uid %d: not a system user (below UID_MIN %d, not root)", uid, uidMin)
	}
	if nologin := []string{"/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false"}; !slices.Contains(nologin, pw[6]) {
		t.Errorf("redwire has the shell %q, want no login shell (one of %q)", pw[6], nologin)
	}
	if pw[5] != bufferDir {
		t.Errorf("redwire's home is %q, want %s", pw[5], bufferDir)
	}
	gr := strings.Split(strings.TrimSpace(run(t, "getent", "group", "redwire")), ":")
	if len(gr) != 4 || gr[2] != pw[3] {
		t.Errorf("redwire's primary group is %s, want the group redwire (%q)", pw[3], gr)
	}
	// redwire:!:20424:0:99999:7:::
	if sp := strings.Split(run(t, "getent", "shadow", "redwire"), ":"); len(sp) < 2 || !strings.HasPrefix(sp[1], "!") && sp[1] != "*" {
		t.Errorf("redwire's password is not locked (shadow %q)", sp)
	}
}

// checkUnitVerifies runs systemd-analyze verify on the installed unit, as
// configs/service_test.go does on the source one, but with the installed
// binary in ExecStart: here both exist where the unit says.
func checkUnitVerifies(t *testing.T) {
	t.Helper()
	if out := run(t, "systemd-analyze", "verify", "--man=no", "--recursive-errors=no", unitPath); strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify %s:\n%s", unitPath, out)
	}
}

func checkBinary(t *testing.T) {
	t.Helper()
	if out := run(t, binPath, "--version"); !strings.Contains(out, "redwire, version "+testVersion+" ") {
		t.Errorf("%s --version printed %q, want version %s (make release's VERSION)", binPath, out, testVersion)
	}
}

// checkAccess checks the owners and modes the way the service meets
// them: as the user redwire it reads and validates the config (as the
// unit's ExecStartPre does) and may write the buffer; as nobody it can do
// neither.
func checkAccess(t *testing.T) {
	t.Helper()
	asRedwire := []string{"--reuid=redwire", "--regid=redwire", "--init-groups"}
	run(t, "setpriv", append(asRedwire, binPath, "check-config", "--config.file="+confPath)...)
	run(t, "setpriv", append(asRedwire, "test", "-w", bufferDir)...)

	asNobody := []string{"--reuid=65534", "--regid=65534", "--clear-groups"}
	for _, probe := range [][]string{{"test", "-r", confPath}, {"test", "-x", bufferDir}} {
		if err := exec.CommandContext(t.Context(), "setpriv", append(asNobody, probe...)...).Run(); err == nil {
			t.Errorf("as nobody, %q succeeds: the package gives away what only redwire may see", probe)
		}
	}
}

// unitSettings returns the first value of each key=value line of a unit.
func unitSettings(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if _, seen := set[k]; ok && !seen && !strings.HasPrefix(k, "#") {
			set[k] = v
		}
	}
	return set
}

func unitMode(t *testing.T, unit map[string]string, key string) fs.FileMode {
	t.Helper()
	m, err := strconv.ParseUint(unit[key], 8, 32)
	if err != nil {
		t.Fatalf("%s: %s=%q: %v", unitPath, key, unit[key], err)
	}
	return fs.FileMode(m)
}

// loginUIDMin is the first uid of a login user: UID_MIN in
// /etc/login.defs, 1000 where it is not set (useradd's default).
func loginUIDMin(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile("/etc/login.defs")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "UID_MIN" {
			n, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("/etc/login.defs: UID_MIN %q: %v", f[1], err)
			}
			return n
		}
	}
	return 1000
}

// userName and groupName name an owner, or give its number if it has no
// name (a deleted user's files).
func userName(uid uint32) string {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return strconv.FormatUint(uint64(uid), 10)
	}
	return u.Username
}

func groupName(gid uint32) string {
	g, err := user.LookupGroupId(strconv.FormatUint(uint64(gid), 10))
	if err != nil {
		return strconv.FormatUint(uint64(gid), 10)
	}
	return g.Name
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func requireExists(t *testing.T, path, why string) {
	t.Helper()
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("%s: %v", why, err)
	}
}

func requireGone(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is still there (%v)", p, err)
		}
	}
}
