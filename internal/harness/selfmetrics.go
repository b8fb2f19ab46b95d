package harness

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// metric sums the samples on the server's /metrics page that match
// series: a metric name, optionally with label pairs that must all be
// present, e.g. `vm_log_messages_total{level="warn"}`.
//
// A series the page does not show sums to 0 without an error: Prometheus
// registers its rejection counters as vectors, which appear only once the
// first sample is rejected (prometheus_tsdb_out_of_order_samples_total is
// absent on a healthy receiver), and "no rejections" is what tests assert.
// The price is that a misspelt name also reads 0; the harness's own tests
// pin the names they rely on by provoking them.
func (a *apiClient) metric(ctx context.Context, series string) (float64, error) {
	name, want, ok := parseSeries(series)
	if !ok {
		return 0, fmt.Errorf("metric %q: want a name, optionally with {label=\"value\",...}", series)
	}
	body, err := a.fetch(ctx, a.base+"/metrics")
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		n, raw, v, ok := parseSample(line)
		if !ok || n != name {
			continue
		}
		if len(want) > 0 {
			got, ok := parseLabels(raw)
			if !ok || !hasLabels(got, want) {
				continue
			}
		}
		sum += v
	}
	return sum, nil
}

// parseSeries splits `name{k="v",...}` into name and label pairs.
func parseSeries(s string) (name string, labels map[string]string, ok bool) {
	s = strings.TrimSpace(s)
	i := strings.IndexByte(s, '{')
	if i < 0 {
		return s, nil, s != "" && !strings.ContainsAny(s, " \t}")
	}
	end := closingBrace(s[i:])
	if i == 0 || end != len(s)-i-1 {
		return "", nil, false
	}
	labels, ok = parseLabels(s[i+1 : len(s)-1])
	return s[:i], labels, ok
}

// hasLabels reports whether got contains every pair of want.
func hasLabels(got, want map[string]string) bool {
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			return false
		}
	}
	return true
}

// fetch GETs url and returns the body of a 200 answer.
func (a *apiClient) fetch(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: HTTP %d, reading body: %w", url, resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d: %s", url, resp.StatusCode, snippet(bytes.TrimSpace(body)))
	}
	return body, nil
}

// parseSample splits one line of the text exposition format into metric
// name, the raw text between the braces, and value. Comments, blank lines
// and anything unparsable report ok=false. It is deliberately lenient: a
// receiver's page is read for one number, and one odd line elsewhere must
// not make that impossible.
func parseSample(line string) (name, labels string, value float64, ok bool) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return "", "", 0, false
	}
	i := strings.IndexAny(line, "{ \t")
	if i <= 0 {
		return "", "", 0, false
	}
	name, rest := line[:i], line[i:]
	if rest[0] == '{' {
		end := closingBrace(rest)
		if end < 0 {
			return "", "", 0, false
		}
		labels, rest = rest[1:end], rest[end+1:]
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return "", "", 0, false
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return "", "", 0, false
	}
	return name, labels, v, true
}

// closingBrace returns the index of the '}' ending the label set that s
// starts with, skipping braces inside quoted label values.
func closingBrace(s string) int {
	quoted, escaped := false, false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case escaped:
			escaped = false
		case c == '\\':
			escaped = quoted
		case c == '"':
			quoted = !quoted
		case c == '}' && !quoted:
			return i
		}
	}
	return -1
}

// parseLabels parses the text between a sample's braces, `a="b", c="d"`,
// unescaping values as the exposition format escapes them.
func parseLabels(raw string) (map[string]string, bool) {
	labels := map[string]string{}
	rest := raw
	for {
		rest = strings.TrimLeft(rest, " \t,")
		if rest == "" {
			return labels, true
		}
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 || len(rest) < eq+2 || rest[eq+1] != '"' {
			return nil, false
		}
		name := strings.TrimSpace(rest[:eq])
		var value strings.Builder
		i := eq + 2
		for ; i < len(rest) && rest[i] != '"'; i++ {
			c := rest[i]
			if c == '\\' && i+1 < len(rest) {
				i++
				switch rest[i] {
				case 'n':
					c = '\n'
				default:
					c = rest[i]
				}
			}
			value.WriteByte(c)
		}
		if i >= len(rest) {
			return nil, false
		}
		labels[name] = value.String()
		rest = rest[i+1:]
	}
}
