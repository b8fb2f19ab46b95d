package remotewrite

import (
	"errors"
	"net/http"
	"strconv"
)

// The headers in which a remote write 2.0 receiver says what it stored of
// a request, whatever its status: a 400 may say that 900 of 1000 samples
// were written, and only 100 were refused.
const (
	headerSamplesWritten    = "X-Prometheus-Remote-Write-Samples-Written"
	headerHistogramsWritten = "X-Prometheus-Remote-Write-Histograms-Written"
	headerExemplarsWritten  = "X-Prometheus-Remote-Write-Exemplars-Written"
)

// Written is what a 2.0 receiver said it wrote of one request.
type Written struct {
	Samples, Histograms, Exemplars int
	// Reported is false when the answer had none of the headers: from a
	// 2xx, the mark of a 1.x receiver, which read a 2.0 body as an empty
	// 1.0 request and wrote nothing.
	Reported bool
}

// writtenOf reads the Written headers of an answer. A header that is not
// a count is taken as absent.
func writtenOf(h http.Header) Written {
	var w Written
	for _, f := range []struct {
		name string
		n    *int
	}{{headerSamplesWritten, &w.Samples}, {headerHistogramsWritten, &w.Histograms}, {headerExemplarsWritten, &w.Exemplars}} {
		v := h.Get(f.name)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			continue
		}
		*f.n, w.Reported = n, true
	}
	return w
}

// Refused is how many of the n samples of a part err refused: all of
// them, unless the receiver said how many it wrote anyway (remote write
// 2.0), then the rest. redwire sends float samples only, so the samples
// count is the one that matters. A receiver that claims more than it was
// sent refused none.
func Refused(n int, err error) int {
	if err == nil {
		return 0
	}
	var re *Error
	if !errors.As(err, &re) || re.Written == nil {
		return n
	}
	return max(0, n-re.Written.Samples)
}
