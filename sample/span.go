package sample

// TargetLabel is the label that names the target a sample was scraped
// from: a lost range is reported per target.
const TargetLabel = "instance"

// Span is where one target's samples lie in time: a lost range is made
// of them.
type Span struct {
	Target   string // the value of TargetLabel
	From, To int64  // the first and the last sample time, ms
	Samples  int
}

// AddSpans widens spans to cover samples, one Span per target, and
// returns the result. A batch holds one target's scrape, a merged store
// record many: past a handful of targets a map finds each one's Span.
func AddSpans(spans []Span, samples []Sample) []Span {
	var index map[string]int
	if len(spans) > 8 {
		index = make(map[string]int, len(spans))
		for i, s := range spans {
			index[s.Target] = i
		}
	}
	last := -1 // consecutive samples are nearly always of one target
	for _, s := range samples {
		t := s.Labels.Get(TargetLabel)
		i := last
		if i < 0 || spans[i].Target != t {
			i = find(spans, index, t)
		}
		if i < 0 {
			spans = append(spans, Span{Target: t, From: s.T, To: s.T})
			i = len(spans) - 1
			if index != nil {
				index[t] = i
			} else if len(spans) > 8 {
				index = make(map[string]int, len(spans))
				for j, sp := range spans {
					index[sp.Target] = j
				}
			}
		}
		sp := &spans[i]
		sp.From, sp.To = min(sp.From, s.T), max(sp.To, s.T)
		sp.Samples++
		last = i
	}
	return spans
}

func find(spans []Span, index map[string]int, target string) int {
	if index != nil {
		if i, ok := index[target]; ok {
			return i
		}
		return -1
	}
	for i := range spans {
		if spans[i].Target == target {
			return i
		}
	}
	return -1
}
