// Command benchtable prints issue 7's four performance figures, medians
// over runs, from `go test -bench` output (what make bench writes to
// bench.out):
//
//	go run ./scripts/benchtable bench.out
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// figure is one row: the median of a metric over the runs of the
// benchmarks whose names match.
type figure struct {
	what, target string
	bench        *regexp.Regexp
	metric       string
	meets        func(float64) bool
}

var figures = []figure{
	{"1. disk bytes per buffered sample, real 3-target outage", "≤ 2", regexp.MustCompile(`^BenchmarkOutageDisk$`), "disk-B/sample", func(v float64) bool { return v <= 2 }},
	{"   (records alone)", "", regexp.MustCompile(`^BenchmarkOutageDisk$`), "record-B/sample", nil},
	{"2. drain / receiver's firehose maximum, receiver on its own CPUs", "≥ 0.8", regexp.MustCompile(`^BenchmarkDrainVsFirehose/receiver=own-cpus$`), "drain/firehose-max", func(v float64) bool { return v >= 0.8 }},
	{"   same, receiver sharing the agent's CPUs", "", regexp.MustCompile(`^BenchmarkDrainVsFirehose/receiver=shared-cpus$`), "drain/firehose-max", nil},
	{"3. CPU per sample vs one redis_exporter per Redis + vmagent", "≤ 0.5", regexp.MustCompile(`^BenchmarkPeerSteadyState/exporters=per-target$`), "cpu-ratio", func(v float64) bool { return v <= 0.5 }},
	{"   peak RSS, same", "≤ 0.5", regexp.MustCompile(`^BenchmarkPeerSteadyState/exporters=per-target$`), "rss-ratio", func(v float64) bool { return v <= 0.5 }},
	{"3. CPU per sample vs one multi-target redis_exporter + vmagent", "≤ 0.5", regexp.MustCompile(`^BenchmarkPeerSteadyState/exporters=multi$`), "cpu-ratio", func(v float64) bool { return v <= 0.5 }},
	{"   peak RSS, same", "≤ 0.5", regexp.MustCompile(`^BenchmarkPeerSteadyState/exporters=multi$`), "rss-ratio", func(v float64) bool { return v <= 0.5 }},
	{"4. targets one core carries at 10 s (2000 real servers)", "≥ 2000", regexp.MustCompile(`^BenchmarkScaleCurve/targets=2000$`), "targets-per-core-at-10s", func(v float64) bool { return v >= 2000 }},
	{"   heap KiB per target (2000 targets)", "", regexp.MustCompile(`^BenchmarkScaleCurve/targets=2000$`), "heap-KiB/target", nil},
}

func main() {
	in := io.Reader(os.Stdin)
	if len(os.Args) > 1 {
		f, err := os.Open(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer f.Close()
		in = f
	}
	runs, err := parse(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%-66s %-7s %9s %5s  %s\n", "figure", "target", "median", "runs", "")
	for _, f := range figures {
		var vals []float64
		for name, metrics := range runs {
			if f.bench.MatchString(name) {
				vals = append(vals, metrics[f.metric]...)
			}
		}
		if len(vals) == 0 {
			fmt.Printf("%-66s %-7s %9s %5d  not run\n", f.what, f.target, "-", 0)
			continue
		}
		m := median(vals)
		verdict := ""
		if f.meets != nil {
			verdict = "missed"
			if f.meets(m) {
				verdict = "met"
			}
		}
		fmt.Printf("%-66s %-7s %9.3g %5d  %s\n", f.what, f.target, m, len(vals), verdict)
	}
}

// gomaxprocs is the -N suffix go test puts on benchmark names.
var gomaxprocs = regexp.MustCompile(`-\d+$`)

// parse reads benchmark result lines: name, iterations, then value-unit
// pairs. It returns every value by benchmark name and unit.
func parse(r io.Reader) (map[string]map[string][]float64, error) {
	runs := map[string]map[string][]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(fields[1]); err != nil {
			continue // a log line that starts with a benchmark's name
		}
		name := gomaxprocs.ReplaceAllString(fields[0], "")
		if runs[name] == nil {
			runs[name] = map[string][]float64{}
		}
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return nil, fmt.Errorf("%s: value %q: %w", name, fields[i], err)
			}
			runs[name][fields[i+1]] = append(runs[name][fields[i+1]], v)
		}
	}
	return runs, sc.Err()
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
