package redis

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// Scrape phases, as in redwire_target_scrape_errors_total{phase}.
const (
	PhaseConnect = "connect" // dial, TLS handshake, connection refused or reset
	PhaseAuth    = "auth"    // NOAUTH, WRONGPASS, ACL refusals
	PhaseTimeout = "timeout" // the scrape deadline passed
	PhaseInfo    = "info"    // INFO failed for another reason
	PhaseParse   = "parse"   // the reply was not INFO output
)

// ScrapeError is a failed scrape: which target, in which phase, and why.
type ScrapeError struct {
	Target string
	Phase  string
	Err    error
}

func (e *ScrapeError) Error() string {
	return fmt.Sprintf("target %s: %s: %v", e.Target, e.Phase, e.Err)
}

func (e *ScrapeError) Unwrap() error { return e.Err }

// errParse marks a reply that could not be parsed.
var errParse = errors.New("parse INFO")

// phaseOf classifies a scrape error for operators: is the server away, are
// the credentials wrong, or is it answering badly?
func phaseOf(err error) string {
	var ne net.Error
	var oe *net.OpError
	msg := err.Error()
	switch {
	case errors.Is(err, errParse):
		return PhaseParse
	case strings.Contains(msg, "NOAUTH"), strings.Contains(msg, "WRONGPASS"), strings.Contains(msg, "NOPERM"),
		strings.Contains(msg, "invalid password"), strings.Contains(msg, "invalid username-password"):
		return PhaseAuth
	case errors.As(err, &ne) && ne.Timeout(), strings.Contains(msg, "deadline exceeded"):
		return PhaseTimeout
	case errors.As(err, &oe), strings.Contains(msg, "connection refused"), strings.Contains(msg, "connection reset"),
		strings.Contains(msg, "EOF"), strings.Contains(msg, "tls:"):
		return PhaseConnect
	}
	return PhaseInfo
}
