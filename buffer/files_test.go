package buffer

import (
	"os"
	"path/filepath"
	"testing"
)

// TestEndpointFileNamesAreStable: the file of an endpoint is the one
// every earlier redwire used, so that an upgrade finds the backlog; and
// StoreFiles lists it under its name.
func TestEndpointFileNamesAreStable(t *testing.T) {
	dir := t.TempDir()
	for name, want := range map[string]string{
		"local":                                "local.bbolt",
		"prom-1.eu_west":                       "prom-1.eu_west.bbolt",
		"https://vm.example:8428/api/v1/write": "https_vm.example_8428_api_v1_write.bbolt",
		"a b":                                  "a_b.bbolt",
		"tenant/ünïcode  ✓":                    "tenant_n_code_.bbolt",
		"../../etc/passwd":                     ".._.._etc_passwd.bbolt",
	} {
		f := EndpointFile(dir, name)
		if f.Name != name || f.Path != filepath.Join(dir, want) {
			t.Errorf("EndpointFile(%q) = %+v, want path %s", name, f, want)
		}
	}
	for _, n := range []string{"b.bbolt", "a.bbolt", "a.bbolt.corrupt-20240101T000000Z", "a.bbolt.compact", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	files, err := StoreFiles(dir)
	if err != nil || len(files) != 2 || files[0] != EndpointFile(dir, "a") || files[1] != EndpointFile(dir, "b") {
		t.Fatalf("StoreFiles = %+v, %v; want a and b", files, err)
	}
}
