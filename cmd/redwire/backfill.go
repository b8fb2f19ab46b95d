package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/alecthomas/kingpin/v2"

	"github.com/redwire/redwire/agent"
	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/offline"
)

// backfillArgs are the backfill command's own flags; the buffer is
// --buffer.path (or --config.file's buffer.path) as for the agent.
type backfillArgs struct {
	output, endpoint string
	all, del         bool
	files            []string
}

func (t *tools) addBackfill(app *kingpin.Application) {
	var a backfillArgs
	c := app.Command("backfill", "Write samples a receiver refused as too old (the parked records of every buffer file) into Prometheus TSDB blocks to import.")
	c.Flag("output", "Directory to write the blocks into (created if missing; give an empty one).").Short('o').Required().StringVar(&a.output)
	c.Flag("endpoint", "Only this endpoint's buffer file (\"local\" in buffer-only mode). Default: every buffer file.").StringVar(&a.endpoint)
	c.Flag("all", "The whole backlog, parked and pending, not only the parked records.").BoolVar(&a.all)
	c.Flag("delete", "Remove the records written from the buffer once the blocks are safely on disk. Needs the agent stopped.").BoolVar(&a.del)
	c.Arg("file", "Export files (from redwire buffer export) to read instead of the buffer.").ExistingFilesVar(&a.files)
	t.run[c.FullCommand()] = func(ctx context.Context, cfg *agent.Config, stdout, stderr io.Writer) int {
		return backfillCmd(ctx, cfg, a, stdout, stderr)
	}
}

func backfillCmd(ctx context.Context, cfg *agent.Config, a backfillArgs, stdout, stderr io.Writer) int {
	opts := offline.BackfillOptions{Output: a.output, All: a.all, Delete: a.del, ExportFiles: a.files}
	if len(a.files) > 0 && (a.all || a.del || a.endpoint != "") {
		fmt.Fprintln(stderr, "redwire: backfill: export files are read whole and never changed: --all, --delete and --endpoint apply to buffer files only")
		return 2
	}
	var err error
	switch {
	case len(a.files) > 0:
	case a.endpoint != "":
		opts.Stores = []buffer.StoreFile{buffer.EndpointFile(cfg.Buffer.Path, a.endpoint)}
	default:
		if opts.Stores, err = buffer.StoreFiles(cfg.Buffer.Path); err == nil && len(opts.Stores) == 0 {
			err = fmt.Errorf("no buffer files in %s (--buffer.path)", cfg.Buffer.Path)
		}
	}
	var sum offline.BackfillSummary
	if err == nil {
		sum, err = offline.Backfill(ctx, opts)
	}
	printBackfill(stdout, sum, a.del)
	if err != nil {
		fmt.Fprintf(stderr, "redwire: %v\n", err)
		return 1
	}
	return 0
}

// printBackfill says what was read, the blocks written, and how to import
// them.
func printBackfill(w io.Writer, s offline.BackfillSummary, del bool) {
	for _, src := range s.Sources {
		fmt.Fprintf(w, "%s: %d records, %d samples read", src.Name, src.Records, src.Samples)
		if src.Area != "export" {
			fmt.Fprintf(w, " (%s records, read %s)", src.Area, src.Mode)
		}
		if del {
			fmt.Fprintf(w, ", %d deleted from the buffer", src.Deleted)
		}
		if src.Corrupt > 0 {
			fmt.Fprintf(w, "; %d corrupt records skipped (left in the buffer)", src.Corrupt)
		}
		fmt.Fprintln(w)
		if src.Mode == offline.ReadSnapshot {
			fmt.Fprintf(w, "%s: note: an agent runs on this buffer and keeps these records\n", src.Name)
		}
	}
	if len(s.Blocks) == 0 {
		if len(s.Sources) > 0 {
			fmt.Fprintln(w, "no samples: no blocks written")
		}
		return
	}
	fmt.Fprintf(w, "wrote %d blocks into %s: %d series, %d samples in %s", len(s.Blocks), s.Output, s.Series, s.Samples, s.Duration.Round(1e6))
	if s.Duplicates > 0 {
		fmt.Fprintf(w, " (%d duplicate samples written once", s.Duplicates)
		if s.Conflicts > 0 {
			fmt.Fprintf(w, "; %d of them with another value: the first read kept", s.Conflicts)
		}
		fmt.Fprint(w, ")")
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BLOCK\tFROM\tTO\tSERIES\tSAMPLES")
	for _, b := range s.Blocks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\n", b.ULID, fmtMs(b.MinT, 1), fmtMs(b.MaxT, 1), b.Series, b.Samples)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, `
To import (README: "Backfilling parked samples"):
  Prometheus 2.x/3.x: copy the block directories into its --storage.tsdb.path;
    it loads them within a minute (or at its next start). Its retention
    (--storage.tsdb.retention.time, 15d by default) applies to them too.
  Thanos:  thanos tools bucket upload-blocks --path=%[1]s --objstore.config-file=bucket.yml \
             --label='cluster="eu-1"'   (the external labels of the Prometheus these samples complete)
  Mimir:   mimirtool backfill --address=http://MIMIR --id=TENANT %[1]s/*/
`, s.Output)
}
