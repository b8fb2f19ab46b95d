package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/common/version"

	"github.com/redwire/redwire/agent"
	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/offline"
)

// tools are the commands besides running the agent: buffer inspect,
// buffer export and replay. They read --config.file, --buffer.path and
// the --remote-write.* flags the agent reads.
type tools struct {
	configFile *string
	flags      *overrides
	logCfg     *promslog.Config
	run        map[string]func(ctx context.Context, cfg *agent.Config, stdout, stderr io.Writer) int
}

// addTools registers the tool commands on app.
func addTools(app *kingpin.Application, configFile *string, flags *overrides, logCfg *promslog.Config) *tools {
	t := &tools{configFile: configFile, flags: flags, logCfg: logCfg, run: map[string]func(context.Context, *agent.Config, io.Writer, io.Writer) int{}}
	buf := app.Command("buffer", "Look into or move the local buffer (safe while the agent runs, except export --delete).")

	inspect := buf.Command("inspect", "Per endpoint buffer file: batches, samples, bytes, time range, series, quarantined records.")
	asJSON := inspect.Flag("json", "Print JSON instead of a table.").Bool()
	t.run[inspect.FullCommand()] = func(_ context.Context, cfg *agent.Config, stdout, stderr io.Writer) int {
		return inspectCmd(cfg, *asJSON, stdout, stderr)
	}

	export := buf.Command("export", "Write buffered batches to a self-describing, checksummed file to carry to a connected host (then: redwire replay FILE).")
	var e exportArgs
	export.Flag("output", "Export file to create (mode 0600; never overwritten).").Short('o').Required().StringVar(&e.out)
	export.Flag("endpoint", "Export only this endpoint's buffer (\"local\" in buffer-only mode). Default: every buffer file.").StringVar(&e.endpoint)
	export.Flag("from", "Only batches with a sample at or after this time (RFC 3339 or Unix seconds).").StringVar(&e.from)
	export.Flag("to", "Only batches with a sample before this time (RFC 3339 or Unix seconds).").StringVar(&e.to)
	export.Flag("delete", "Remove the exported batches from the buffer once the file is safely on disk. Needs the agent stopped.").BoolVar(&e.del)
	export.Flag("parked", "Export the parked area (samples the receiver refused for their age) instead of the backlog.").BoolVar(&e.parked)
	t.run[export.FullCommand()] = func(ctx context.Context, cfg *agent.Config, stdout, stderr io.Writer) int {
		return exportCmd(ctx, cfg, e, stdout, stderr)
	}

	t.addReplay(app)
	t.addBackfill(app) // cmd/redwire/backfill.go
	return t
}

// handles reports whether cmd is a tool command.
func (t *tools) handles(cmd string) bool { return t.run[cmd] != nil }

// exec runs the tool command cmd and returns the exit code.
func (t *tools) exec(ctx context.Context, cmd string, stdout, stderr io.Writer) int {
	cfg, err := loadConfig(*t.configFile, t.flags)
	if err != nil {
		fmt.Fprintf(stderr, "redwire: invalid config: %v\n", err)
		return 1
	}
	return t.run[cmd](ctx, cfg, stdout, stderr)
}

func inspectCmd(cfg *agent.Config, asJSON bool, stdout, stderr io.Writer) int {
	files, err := buffer.StoreFiles(cfg.Buffer.Path)
	if err != nil {
		fmt.Fprintf(stderr, "redwire: %v\n", err)
		return 1
	}
	out := []offline.StoreInspection{}
	code := 0
	for _, f := range files {
		in, err := offline.InspectStore(f, buffer.ReadOptions{})
		if err != nil {
			fmt.Fprintf(stderr, "redwire: %v\n", err)
			code = 1
			continue
		}
		out = append(out, in)
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
		return code
	}
	if len(out) == 0 {
		fmt.Fprintf(stdout, "no buffer files in %s\n", cfg.Buffer.Path)
		return code
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tBATCHES\tSAMPLES\tBYTES\tSERIES\tOLDEST\tNEWEST\tQUARANTINED\tCORRUPT\tREAD")
	for _, in := range out {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\t%d\t%d\t%s\n", in.Name, in.Batches, in.Samples, in.Bytes, in.Series,
			fmtMs(in.OldestT, in.Batches), fmtMs(in.NewestT, in.Batches), in.Quarantined, in.Corrupt, in.Mode)
	}
	_ = tw.Flush()
	printParked(stdout, out)
	printGaps(stdout, out)
	return code
}

// printParked lists the parked areas: samples the receiver refused for
// their age, kept for a declared out-of-order window or redwire backfill.
func printParked(stdout io.Writer, ins []offline.StoreInspection) {
	var parked bool
	for _, in := range ins {
		parked = parked || in.Parked.Batches > 0
	}
	if !parked {
		fmt.Fprintln(stdout, "\nnothing parked")
		return
	}
	fmt.Fprintln(stdout, "\nparked (refused by the receiver for their age; `redwire backfill` writes them into TSDB blocks):")
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tBATCHES\tSAMPLES\tBYTES\tOLDEST\tNEWEST")
	for _, in := range ins {
		if p := in.Parked; p.Batches > 0 {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\n", in.Name, p.Batches, p.Samples, p.Bytes, fmtMs(p.OldestT, p.Batches), fmtMs(p.NewestT, p.Batches))
		}
	}
	_ = tw.Flush()
}

// printGaps lists the lost ranges of every buffer file, newest first.
func printGaps(stdout io.Writer, ins []offline.StoreInspection) {
	n := 0
	for _, in := range ins {
		n += len(in.Gaps)
	}
	if n == 0 {
		fmt.Fprintln(stdout, "\nno lost ranges recorded")
		return
	}
	fmt.Fprintf(stdout, "\nlost ranges (%d), newest first:\n", n)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tTARGET\tREASON\tFROM\tTO\tSAMPLES")
	for _, in := range ins {
		for _, g := range in.Gaps {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", in.Name, g.Target, g.Reason,
				g.From.Format(time.RFC3339), g.To.Format(time.RFC3339), g.Samples)
		}
	}
	_ = tw.Flush()
}

func fmtMs(ms, n int64) string {
	if n == 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339)
}

type exportArgs struct {
	out, endpoint, from, to string
	del, parked             bool
}

func exportCmd(ctx context.Context, cfg *agent.Config, e exportArgs, stdout, stderr io.Writer) int {
	opts := offline.ExportOptions{Delete: e.del, Parked: e.parked, Source: cfg.Buffer.Path, RedwireVersion: version.Version}
	var err error
	if opts.FromMs, err = parseTime("--from", e.from); err == nil {
		opts.ToMs, err = parseTime("--to", e.to)
	}
	if err != nil {
		fmt.Fprintf(stderr, "redwire: %v\n", err)
		return 2
	}
	var files []buffer.StoreFile
	if e.endpoint != "" {
		files = []buffer.StoreFile{buffer.EndpointFile(cfg.Buffer.Path, e.endpoint)}
	} else if files, err = buffer.StoreFiles(cfg.Buffer.Path); err == nil && len(files) == 0 {
		err = fmt.Errorf("no buffer files in %s", cfg.Buffer.Path)
	}
	if err == nil {
		var res offline.ExportResult
		res, err = offline.Export(ctx, e.out, files, opts)
		if err == nil {
			for _, ep := range res.Endpoints {
				fmt.Fprintf(stdout, "%s: %d batches, %d samples exported (read %s)", ep.Name, ep.Records, ep.Samples, ep.Mode)
				if e.del {
					fmt.Fprintf(stdout, ", %d deleted from the buffer", ep.Deleted)
				}
				if ep.Corrupt > 0 {
					fmt.Fprintf(stdout, "; %d corrupt batches left in the buffer", ep.Corrupt)
				}
				fmt.Fprintln(stdout)
				if ep.Mode == offline.ReadSnapshot {
					fmt.Fprintf(stdout, "%s: note: an agent runs on this buffer and will still send these batches itself\n", ep.Name)
				}
			}
			fmt.Fprintf(stdout, "wrote %s: %d batches, %d samples, %s to %s\n", res.Path, res.Trailer.Records, res.Trailer.Samples,
				fmtMs(res.Trailer.MinT, res.Trailer.Records), fmtMs(res.Trailer.MaxT, res.Trailer.Records))
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "redwire: buffer export: %v\n", err)
		return 1
	}
	return 0
}

// parseTime reads RFC 3339 or Unix seconds (fractions allowed) as ms;
// "" is 0, unbounded.
func parseTime(flag, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UnixMilli(), nil
	}
	if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
		return int64(f * 1000), nil
	}
	return 0, fmt.Errorf("%s %q: want RFC 3339 (2006-01-02T15:04:05Z) or Unix seconds", flag, s)
}
