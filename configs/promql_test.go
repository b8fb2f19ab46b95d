package configs

import (
	"slices"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// selectors returns the vector selectors of a PromQL expression, parsed
// by Prometheus' own parser, in the order they appear.
func selectors(expr string) ([]*parser.VectorSelector, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var out []*parser.VectorSelector
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out, nil
}

// selectorName is a selector's metric name: the name before the braces or
// an exact {__name__="..."} matcher; "" for a regex-only selector.
func selectorName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

// metricNames returns the metric names an expression selects.
func metricNames(expr string) ([]string, error) {
	vss, err := selectors(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, vs := range vss {
		if n := selectorName(vs); n != "" {
			names = append(names, n)
		}
	}
	return names, nil
}

// jobMatchers returns, for every selector of expr with a job="..."
// matcher, its metric name and the job. Used to check a metric is queried
// under the job redwire sends it with.
func jobMatchers(expr string) map[string][]string {
	out := map[string][]string{}
	vss, err := selectors(expr)
	if err != nil {
		return out
	}
	for _, vs := range vss {
		n := selectorName(vs)
		for _, m := range vs.LabelMatchers {
			if n != "" && m.Name == "job" && m.Type == labels.MatchEqual && !slices.Contains(out[n], m.Value) {
				out[n] = append(out[n], m.Value)
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
