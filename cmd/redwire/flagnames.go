package main

import (
	"strings"

	"github.com/alecthomas/kingpin/v2"
)

// Flags are spelled as Prometheus spells its own: dots between levels,
// dashes within a word (--remote-write.queue-config.max-samples-per-send).
// Earlier releases spelled words with underscores, as the config file
// does (--buffer.max_bytes); those spellings keep working, hidden from
// --help, so that no unit file or script breaks on an upgrade.

// canonicalFlags rewrites each flag in args spelled the old way, with
// underscores, to its current spelling, if that names a flag of app (or
// of one of its commands). Everything else, and all after "--", is left
// as it is, so kingpin's own error names an unknown flag as typed.
func canonicalFlags(app *kingpin.Application, args []string) []string {
	known := map[string]bool{}
	m := app.Model()
	for _, f := range m.Flags {
		known[f.Name] = true
	}
	for _, c := range m.Commands {
		for _, f := range c.Flags {
			known[f.Name] = true
		}
	}
	out := make([]string, len(args))
	copy(out, args)
	for i, a := range out {
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "--") || !strings.Contains(a, "_") {
			continue
		}
		name, value, hasValue := strings.Cut(a[2:], "=")
		respelled := strings.ReplaceAll(name, "_", "-")
		if !known[strings.TrimPrefix(respelled, "no-")] {
			continue
		}
		out[i] = "--" + respelled
		if hasValue {
			out[i] += "=" + value
		}
	}
	return out
}
