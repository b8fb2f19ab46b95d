package agent

import (
	"os"
	"path/filepath"
	"testing"
)

// TestLastScrapesSurviveACrash: what the slot file says after a crash
// (no save) is every target's last scrape, exactly; a second crash
// before a target is scraped again keeps its time; a record cut short
// ends the file without taking the others with it.
func TestLastScrapesSurviveACrash(t *testing.T) {
	dir := t.TempDir()
	tmp, disk := filepath.Join(dir, "slots"), filepath.Join(dir, "disk.json")
	ls, err := openLastScrapes(tmp, disk)
	if err != nil {
		t.Fatal(err)
	}
	for i := range int64(5) {
		ls.scraped("a", 1000+i)
		ls.scraped("bb", 2000+i)
	}
	ls.scraped("c", 3000)
	// A crash: no save, the file stays as the writes left it.
	ls, err = openLastScrapes(tmp, disk)
	if err != nil {
		t.Fatal(err)
	}
	if prev, ok := ls.scraped("a", 5000); !ok || prev != 1004 {
		t.Errorf("a: previous run's last scrape %v, %v; want 1004", prev, ok)
	}
	// Crash again before bb and c are scraped; then cut the last record.
	raw, err := os.ReadFile(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmp, append(raw, 7, 0, 'n', 'e'), 0o600); err != nil {
		t.Fatal(err)
	}
	ls, err = openLastScrapes(tmp, disk)
	if err != nil {
		t.Fatal(err)
	}
	for target, want := range map[string]int64{"a": 5000, "bb": 2004, "c": 3000} {
		if prev, ok := ls.scraped(target, 9000); !ok || prev != want {
			t.Errorf("%s: previous last scrape %v, %v; want %v", target, prev, ok, want)
		}
	}
	// A clean stop writes the disk file, which a lost tmpfs leaves alone.
	if err := ls.save(true); err != nil {
		t.Fatal(err)
	}
	ls, err = openLastScrapes("", disk)
	if err != nil {
		t.Fatal(err)
	}
	if prev, ok := ls.scraped("c", 9500); !ok || prev != 9000 {
		t.Errorf("c from the disk file: %v, %v; want 9000", prev, ok)
	}
}
