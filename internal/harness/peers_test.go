//go:build linux

package harness

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestReadProcUsage checks the clock-tick conversion against getrusage,
// which reports the same kernel counters in microseconds: read between two
// getrusage calls, /proc's figure lies between them, less at most one tick
// each for utime and stime, which /proc rounds down. No clock is involved,
// so a loaded machine only widens the bracket.
func TestReadProcUsage(t *testing.T) {
	ticks, err := clockTicks()
	if err != nil {
		t.Fatal(err)
	}
	tick := time.Second / time.Duration(ticks)
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	// Enough CPU, by the kernel's own count, that ticks cannot round it
	// to zero.
	for cpu() < 10*tick {
	}
	before := cpu()
	u, err := ReadProcUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	after := cpu()
	if u.CPU <= 0 || u.CPU < before-2*tick || u.CPU > after {
		t.Errorf("CPU from /proc = %v, want within [%v, %v]: getrusage before and after, less 2 ticks of %v", u.CPU, before-2*tick, after, tick)
	}
	if u.RSS <= 0 || u.PeakRSS < u.RSS {
		t.Errorf("usage of this process = %+v, want 0 < RSS <= PeakRSS", u)
	}
	if _, err := ReadProcUsage(0); err == nil {
		t.Error("ReadProcUsage(0) succeeded")
	}
}

// TestPeersDeliver runs both exporter deployments behind vmagent into a
// real receiver: the samples arrive with vmagent's label, and the PIDs
// are the processes serving the ports.
func TestPeersDeliver(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	prom := StartPrometheus(t)

	perTarget := StartRedisExporter(t, r.URL())
	multi := StartRedisExporter(t, "")
	StartVMAgent(t, VMAgentConfig{
		WriteURL: prom.WriteURL(), Targets: []string{perTarget.Addr()},
		Interval: time.Second, Labels: map[string]string{"stack": "per-target"},
	})
	vm := StartVMAgent(t, VMAgentConfig{
		WriteURL: prom.WriteURL(), Targets: []string{r.URL()}, MultiTargetExporter: multi.Addr(),
		Interval: time.Second, Labels: map[string]string{"stack": "multi"},
	})

	for stack, instance := range map[string]string{"per-target": perTarget.Addr(), "multi": r.URL()} {
		WaitFor(t, 30*time.Second, stack+" redis_up in the receiver", func() (bool, error) {
			v, err := prom.Query(context.Background(), `redis_up{job="redis",stack="`+stack+`",instance="`+instance+`"} == 1`)
			return err == nil && len(v) == 1, err
		})
	}
	// The multi-target exporter's own page is a job of its own.
	WaitFor(t, 30*time.Second, "redis_exporter job in the receiver", func() (bool, error) {
		v, err := prom.Query(context.Background(), `redis_exporter_build_info{job="redis_exporter",stack="multi"}`)
		return err == nil && len(v) == 1, err
	})

	for name, pid := range map[string]int{"exporter": perTarget.PID(), "multi-target exporter": multi.PID(), "vmagent": vm.PID()} {
		u, err := ReadProcUsage(pid)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if u.PeakRSS <= 0 {
			t.Errorf("%s: usage %+v, want a peak RSS", name, u)
		}
	}
	if err := listensOn(vm.PID(), perTarget.srv.port); err == nil {
		t.Error("listensOn says vmagent listens on the exporter's port")
	}
	if v, err := vm.Metric(context.Background(), "vm_promscrape_scrapes_failed_total"); err != nil || v != 0 {
		t.Errorf("vmagent failed scrapes = %v (%v), want 0", v, err)
	}
}
