package agent

import (
	"testing"
	"time"
)

// TestFillRateTimeToFull: a buffer growing 100 bytes a second with 1000
// bytes of room is full in 10 s; one that stopped growing says nothing;
// one with no room left is full now.
func TestFillRateTimeToFull(t *testing.T) {
	var f fillRate
	t0 := time.Unix(1_700_000_000, 0)
	for i := range 30 {
		f.observe(t0.Add(time.Duration(i)*time.Second), int64(i)*100)
	}
	if ttf, ok := f.timeToFull(1000, true); !ok || ttf < 9.9 || ttf > 10.1 {
		t.Errorf("time to full = %v, %v; want 10 s", ttf, ok)
	}
	if ttf, ok := f.timeToFull(0, true); !ok || ttf != 0 {
		t.Errorf("no room: %v, %v; want 0, true", ttf, ok)
	}
	if _, ok := f.timeToFull(1000, false); ok {
		t.Error("room unknown: a time to full was given")
	}
	for i := 30; i < 60; i++ { // draining
		f.observe(t0.Add(time.Duration(i)*time.Second), int64(60-i)*100)
	}
	if ttf, ok := f.timeToFull(1000, true); ok {
		t.Errorf("a draining buffer: time to full %v", ttf)
	}
}

// TestFillRateWarnsOnceAnOutage: the warning comes when the buffer fills
// sooner than the outage has lasted, once, and again in the next outage.
func TestFillRateWarnsOnceAnOutage(t *testing.T) {
	var f fillRate
	t0 := time.Unix(1_700_000_000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	if warn, _ := f.outage(at(0), true, 100, true); warn {
		t.Fatal("warned at the start of an outage with 100 s to go")
	}
	if warn, _ := f.outage(at(50), true, 60, true); warn {
		t.Fatal("warned with 60 s to go after 50 s of outage")
	}
	if warn, lasted := f.outage(at(70), true, 60, true); !warn || lasted != 70*time.Second {
		t.Fatalf("no warning with 60 s to go after 70 s of outage (lasted %v)", lasted)
	}
	if warn, _ := f.outage(at(80), true, 10, true); warn {
		t.Fatal("warned twice in one outage")
	}
	f.outage(at(90), false, 0, false)
	f.outage(at(100), true, 50, true)
	if warn, _ := f.outage(at(160), true, 50, true); !warn {
		t.Fatal("no warning in the next outage")
	}
}
