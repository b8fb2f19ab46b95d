package configs

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// metricNames returns the metric names an expression selects: every
// identifier that is not a function or aggregation (followed by "("), a
// keyword, a label name (inside {} or the label list of by, without, on,
// ignoring, group_left, group_right) or part of a string, number or
// duration, plus {__name__="..."} values. Prometheus' promql/parser would
// do this from the AST but cannot be imported here (see rule); promtool
// check rules validates the syntax of every expression.
func metricNames(expr string) ([]string, error) {
	var names []string
	s := expr
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(s, i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '#': // comment to end of line
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '{':
			end := closing(s, i, '{', '}')
			if end < 0 {
				return nil, fmt.Errorf("unbalanced { at %d in %q", i, expr)
			}
			if n := nameMatcher(s[i+1 : end]); n != "" {
				names = append(names, n)
			}
			i = end + 1
		case c == '[':
			end := closing(s, i, '[', ']')
			if end < 0 {
				return nil, fmt.Errorf("unbalanced [ at %d in %q", i, expr)
			}
			i = end + 1
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			for i < len(s) && (isIdent(s[i]) || s[i] == '.') {
				i++
			}
		case isIdentStart(c):
			start := i
			for i < len(s) && isIdent(s[i]) {
				i++
			}
			word := s[start:i]
			next := i
			for next < len(s) && (s[next] == ' ' || s[next] == '\t' || s[next] == '\n' || s[next] == '\r') {
				next++
			}
			lower := strings.ToLower(word)
			switch {
			case labelListKeywords[lower]:
				if next < len(s) && s[next] == '(' {
					end := closing(s, next, '(', ')')
					if end < 0 {
						return nil, fmt.Errorf("unbalanced ( after %s in %q", word, expr)
					}
					i = end + 1
				}
			case keywords[lower] || aggregations[lower]:
			case next < len(s) && s[next] == '(': // a function
			default:
				names = append(names, word)
			}
		default:
			i++
		}
	}
	return names, nil
}

var (
	labelListKeywords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	keywords          = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true, "inf": true, "nan": true}
	aggregations      = map[string]bool{"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
		"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true, "limitk": true, "limit_ratio": true}
)

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdent(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

// skipString returns the index after the string literal starting at i.
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string at %d in %q", i, s)
}

// closing returns the index of the bracket closing the one at i, skipping
// strings, or -1.
func closing(s string, i int, open, close byte) int {
	depth := 0
	for j := i; j < len(s); j++ {
		switch s[j] {
		case '"', '\'', '`':
			end, err := skipString(s, j)
			if err != nil {
				return -1
			}
			j = end - 1
		case open:
			depth++
		case close:
			depth--
			if depth == 0 {
				return j
			}
		}
	}
	return -1
}

// nameMatcher returns the value of a __name__="..." matcher in a {}
// body, or "".
func nameMatcher(body string) string {
	for _, m := range strings.Split(body, ",") {
		k, v, ok := strings.Cut(m, "=")
		if ok && strings.TrimSpace(k) == "__name__" && !strings.HasPrefix(v, "~") {
			return strings.Trim(strings.TrimSpace(v), "\"'`")
		}
	}
	return ""
}

// jobMatchers returns, for every selector of expr with a job="..."
// matcher, its metric name and the job. Used to check a metric is queried
// under the job redwire sends it with.
func jobMatchers(expr string) map[string][]string {
	out := map[string][]string{}
	names, err := metricNames(expr)
	if err != nil {
		return out
	}
	for _, n := range names {
		rest := expr
		for {
			k := strings.Index(rest, n+"{")
			if k < 0 {
				break
			}
			rest = rest[k+len(n):]
			end := closing(rest, 0, '{', '}')
			if end < 0 {
				break
			}
			for _, m := range strings.Split(rest[1:end], ",") {
				k, v, ok := strings.Cut(m, "=")
				if ok && strings.TrimSpace(k) == "job" && !strings.HasPrefix(v, "~") {
					job := strings.Trim(strings.TrimSpace(v), "\"'`")
					if !slices.Contains(out[n], job) {
						out[n] = append(out[n], job)
					}
				}
			}
		}
	}
	return out
}

func TestMetricNames(t *testing.T) {
	cases := []struct {
		expr string
		want []string
	}{
		{`redis_up{job="redis"} == 0`, []string{"redis_up"}},
		{`sum by (instance, db) (redis_db_keys{instance=~"a|b"})`, []string{"redis_db_keys"}},
		{`rate(x_total{a="{b}"}[5m] offset 1h) / on(instance) group_left(role) redis_instance_info`, []string{"x_total", "redis_instance_info"}},
		{`histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))`, []string{"h_bucket"}},
		{`time() - (a > 0) > 3600 and b unless count without (x) (c)`, []string{"a", "b", "c"}},
		{`{__name__="named", job="x"} or 1e3 * d`, []string{"named", "d"}},
		{`max_over_time(m[1h:5m]) > bool 2`, []string{"m"}},
	}
	for _, c := range cases {
		got, err := metricNames(c.expr)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("metricNames(%q) = %q, %v; want %q", c.expr, got, err, c.want)
		}
	}
	if got := jobMatchers(`a{job="redis"} and b{x="1", job="redwire"} and a{job="z"}`); !slices.Equal(got["a"], []string{"redis", "z"}) || !slices.Equal(got["b"], []string{"redwire"}) {
		t.Errorf("jobMatchers = %v", got)
	}
}
