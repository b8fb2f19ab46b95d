package offline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/pause"
	"github.com/redwire/redwire/remotewrite"
	"github.com/redwire/redwire/sample"
)

// ReplayOptions shape ReplayFiles.
type ReplayOptions struct {
	// Endpoint is the receiver, exactly as a remote_write entry: URL,
	// auth, TLS, headers, remote_timeout, and queue_config's
	// max_samples_per_send, min_backoff and max_backoff.
	Endpoint remotewrite.EndpointConfig
	Version  string // in the User-Agent
	// ProgressFile overrides FILE.progress; only with a single file.
	ProgressFile string
	// SkipCorrupt replays the readable records of a damaged file instead
	// of refusing it.
	SkipCorrupt bool
	// MaxSamplesPerSecond limits the pace; 0: none.
	MaxSamplesPerSecond float64
	Logger              *slog.Logger
	// Progress is called after every answered request, from the
	// replaying goroutine.
	Progress func(ReplayProgress)
	// ParkedDir is where samples the receiver refuses for their age are
	// kept, as the agent keeps them: the parked area of a buffer file
	// (ParkedFile), for `redwire backfill --buffer.path=ParkedDir` or a
	// later replay. Default: "parked" beside the first file.
	ParkedDir string
}

// ParkedFile names the buffer file of ReplayOptions.ParkedDir.
const ParkedFile = "replay"

// ReplayProgress is where a replay stands.
type ReplayProgress struct {
	File                       string
	FileIndex, Files           int
	SamplesDone, SamplesTotal  int64 // over all files, earlier runs included
	SamplesSent, SamplesFailed int64 // this run
}

// ReplaySummary is what a replay did.
type ReplaySummary struct {
	Files []ReplayFileSummary
	// SamplesSent were accepted by the receiver in this run;
	// SamplesAlreadyDone were handled by an earlier, interrupted run.
	SamplesSent        int64
	SamplesAlreadyDone int64
	// Dropped counts samples given up on in this run, by reason:
	// http_<status> (the receiver rejected them), too_large (one sample
	// over the receiver's limit).
	Dropped map[string]int64
	// Parked were refused by the receiver for their age in this run and
	// kept in ParkedPath's parked area, not dropped.
	Parked         int64
	ParkedPath     string
	CorruptRecords int // skipped damaged stretches (SkipCorrupt)
	// Message is what the receiver was sent last: the endpoint's
	// protobuf_message, or 1.0 if the receiver showed it takes 1.0 only.
	Message  remotewrite.Message
	Requests int
	Retries  int
	Duration time.Duration
}

// ReplayFileSummary is one file's part of a replay.
type ReplayFileSummary struct {
	Path         string
	ProgressFile string
	MinT, MaxT   int64
	Records      int64
	Samples      int64
	Done         bool
}

// ReplayState is a progress file: how far a file has been replayed.
type ReplayState struct {
	Version int    `json:"version"`
	File    string `json:"file"`
	// Size and CRC identify the export file: progress of another file
	// under the same name is not applied.
	Size int64  `json:"size"`
	CRC  uint32 `json:"crc32c"`
	// Offset is the first frame not yet acknowledged (sent or dropped);
	// Records counts those before it.
	Offset      int64            `json:"offset"`
	Records     int64            `json:"records_done"`
	SamplesSent int64            `json:"samples_sent"`
	Parked      int64            `json:"samples_parked,omitempty"`
	Dropped     map[string]int64 `json:"samples_dropped,omitempty"`
	Done        bool             `json:"done"`
	Updated     time.Time        `json:"updated"`
}

// ReadReplayState reads a progress file.
func ReadReplayState(path string) (ReplayState, error) {
	var st ReplayState
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("progress file %s: %w", path, err)
	}
	return st, nil
}

// ErrReceiverRefused ends a replay on 401, 403 or 404: credentials or URL
// are wrong, and retrying cannot help.
var ErrReceiverRefused = errors.New("receiver refuses our credentials or URL")

// replayFile is one checked input.
type replayFile struct {
	path, progress string
	f              *ExportFile
	fh             *os.File
	check          ExportCheck
	crc            uint32
	state          ReplayState
}

// ReplayFiles pushes export files to a receiver, oldest first (by their
// earliest sample), with the agent's rules: 5xx and network errors are
// retried with backoff and jitter, honouring Retry-After; 429 waits; 413
// splits the request; 400, 409, 415 and other 4xx drop the samples and
// count them; 401, 403 and 404 stop the replay with ErrReceiverRefused.
//
// Every file is checked whole before anything is sent; a damaged one is
// refused unless SkipCorrupt. After each answered request the position is
// written to the file's progress file and fsynced, so a rerun continues
// after the last acknowledged record.
func ReplayFiles(ctx context.Context, paths []string, opts ReplayOptions) (ReplaySummary, error) {
	start := time.Now()
	sum := ReplaySummary{Dropped: map[string]int64{}}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ProgressFile != "" && len(paths) != 1 {
		return sum, errors.New("a progress file can be named only for a single export file")
	}
	files, err := checkFiles(paths, opts)
	defer func() {
		for _, rf := range files {
			rf.fh.Close()
		}
	}()
	if err != nil {
		return sum, err
	}
	client, err := remotewrite.NewClient(opts.Endpoint, opts.Version)
	if err != nil {
		return sum, err
	}
	r := &replayer{opts: opts, client: client, sum: &sum, log: opts.Logger}
	q := opts.Endpoint.QueueConfig
	r.maxSend = q.MaxSamplesPerSend
	if r.maxSend <= 0 {
		r.maxSend = remotewrite.DefaultQueueConfig.MaxSamplesPerSend
	}
	r.policy = remotewrite.Policy{MinBackoff: time.Duration(q.MinBackoff), MaxBackoff: time.Duration(q.MaxBackoff)}
	if r.policy.MinBackoff <= 0 || r.policy.MaxBackoff <= 0 {
		d := remotewrite.DefaultQueueConfig
		r.policy = remotewrite.Policy{MinBackoff: time.Duration(d.MinBackoff), MaxBackoff: time.Duration(d.MaxBackoff)}
	}
	r.policy.Window = time.Duration(opts.Endpoint.OutOfOrderTimeWindow)
	// The endpoint's protobuf_message, as the agent's sender speaks it
	// (agent/agent.go newSender), with the same fall back to 1.0.
	r.policy.Protocol = remotewrite.NewProtocol(opts.Endpoint.ProtobufMessage).WithNativeHistograms(opts.Endpoint.NativeHistograms)
	if r.parkedDir = opts.ParkedDir; r.parkedDir == "" {
		r.parkedDir = filepath.Join(filepath.Dir(paths[0]), "parked")
	}
	defer r.closeParked()
	for _, rf := range files {
		r.prog.SamplesTotal += rf.check.Samples
		done := rf.state.SamplesSent + rf.state.Parked
		for _, n := range rf.state.Dropped {
			done += n
		}
		r.prog.SamplesDone += done
		sum.SamplesAlreadyDone += done
	}
	r.prog.Files = len(files)
	for i, rf := range files {
		r.prog.File, r.prog.FileIndex = rf.path, i
		err := r.file(ctx, rf)
		sum.Files = append(sum.Files, ReplayFileSummary{Path: rf.path, ProgressFile: rf.progress, MinT: rf.check.MinT,
			MaxT: rf.check.MaxT, Records: rf.check.Records, Samples: rf.check.Samples, Done: rf.state.Done})
		if err != nil {
			sum.Duration = time.Since(start)
			return sum, fmt.Errorf("%s: %w (progress saved in %s at record %d; rerun to continue)", rf.path, err, rf.progress, rf.state.Records)
		}
	}
	sum.Duration = time.Since(start)
	sum.Message = r.policy.Protocol.Message()
	return sum, nil
}

// checkFiles opens and verifies every file, loads its progress, and sorts
// them oldest first.
func checkFiles(paths []string, opts ReplayOptions) ([]*replayFile, error) {
	var files []*replayFile
	var problems []string
	for _, p := range paths {
		f, fh, err := ReadExportFile(p)
		if err != nil {
			return files, err
		}
		rf := &replayFile{path: p, f: f, fh: fh, progress: p + ".progress"}
		files = append(files, rf)
		if opts.ProgressFile != "" {
			rf.progress = opts.ProgressFile
		}
		if rf.check, err = f.Verify(); err != nil {
			return files, fmt.Errorf("%s: %w", p, err)
		}
		for _, c := range rf.check.Corrupt {
			problems = append(problems, fmt.Sprintf("%s: corrupt at %v", p, c))
		}
		h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
		if _, err := io.Copy(h, io.NewSectionReader(fh, 0, f.Size())); err != nil {
			return files, fmt.Errorf("%s: %w", p, err)
		}
		rf.crc = h.Sum32()
		rf.state = ReplayState{Version: 1, File: p, Size: f.Size(), CRC: rf.crc, Offset: f.Start()}
		if st, err := ReadReplayState(rf.progress); err == nil {
			if st.Size != rf.state.Size || st.CRC != rf.crc {
				return files, fmt.Errorf("progress file %s belongs to another file (size %d, crc32c %08x; %s has %d, %08x): remove it or name another with --progress.file",
					rf.progress, st.Size, st.CRC, p, rf.state.Size, rf.crc)
			}
			st.Version, st.File = 1, p
			rf.state = st
		} else if !errors.Is(err, os.ErrNotExist) {
			return files, err
		}
	}
	if len(problems) > 0 && !opts.SkipCorrupt {
		if len(problems) > 10 {
			problems = append(problems[:10], fmt.Sprintf("and %d more", len(problems)-10))
		}
		return files, fmt.Errorf("damaged export file, nothing sent (--skip-corrupt replays the readable records):\n  %s", strings.Join(problems, "\n  "))
	}
	sort.SliceStable(files, func(i, j int) bool { return files[i].check.MinT < files[j].check.MinT })
	return files, nil
}

type replayer struct {
	opts    ReplayOptions
	client  *remotewrite.Client
	enc     remotewrite.Encoder
	maxSend int
	policy  remotewrite.Policy
	sum     *ReplaySummary
	prog    ReplayProgress
	log     *slog.Logger
	// parkedDir holds the store refused-for-age samples are parked in,
	// opened at the first one.
	parkedDir string
	parked    *buffer.Store
}

// tally is one group's outcome, adopted only once the receiver has
// answered for all of it: progress is saved per group.
type tally struct {
	sent    int64
	parked  int64
	dropped map[string]int64
}

func (t *tally) drop(reason string, n int) {
	if t.dropped == nil {
		t.dropped = map[string]int64{}
	}
	t.dropped[reason] += int64(n)
}

// file replays one file from its saved position.
func (r *replayer) file(ctx context.Context, rf *replayFile) error {
	if rf.state.Done {
		r.log.Info("already replayed; skipping", "file", rf.path, "progress_file", rf.progress)
		return nil
	}
	var (
		group   sample.Batch
		records int64
		end     int64
	)
	flush := func() error {
		if len(group.Samples) == 0 {
			return nil
		}
		t, err := r.sendGroup(ctx, &group)
		if err != nil {
			return err
		}
		st := &rf.state
		st.Offset, st.Records, st.SamplesSent = end, st.Records+records, st.SamplesSent+t.sent
		st.Parked += t.parked
		r.sum.SamplesSent += t.sent
		r.sum.Parked += t.parked
		r.prog.SamplesDone += t.sent + t.parked
		r.prog.SamplesSent += t.sent
		for k, n := range t.dropped {
			if st.Dropped == nil {
				st.Dropped = map[string]int64{}
			}
			st.Dropped[k] += n
			r.sum.Dropped[k] += n
			r.prog.SamplesDone += n
			r.prog.SamplesFailed += n
		}
		group, records = sample.Batch{}, 0
		if err := r.save(rf); err != nil {
			return err
		}
		if r.opts.Progress != nil {
			r.opts.Progress(r.prog)
		}
		if r.opts.MaxSamplesPerSecond > 0 {
			pause.For(ctx, time.Duration(float64(t.sent)/r.opts.MaxSamplesPerSecond*float64(time.Second)))
		}
		return ctx.Err()
	}
	_, err := rf.f.Records(rf.state.Offset, func(rec ExportRecord) error {
		if len(group.Samples) > 0 && len(group.Samples)+len(rec.Batch.Samples) > r.maxSend {
			if err := flush(); err != nil {
				return err
			}
		}
		group.Samples = append(group.Samples, rec.Batch.Samples...)
		records++
		end = rec.End
		return nil
	}, func(cf CorruptFrame) error {
		// Only reached with SkipCorrupt: checkFiles refused the file
		// otherwise.
		r.log.Warn("skipping a damaged part of the export file", "file", rf.path, "offset", cf.Offset, "bytes", cf.Skip, "err", cf.Err)
		r.sum.CorruptRecords++
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return err
	}
	rf.state.Done = true
	rf.state.Offset = rf.f.Size()
	return r.save(rf)
}

// sendGroup sends b under the receiver policy until the receiver has
// answered for all of it. A refusal drops and counts what it refused;
// 401, 403 and 404 end the replay with ErrReceiverRefused.
func (r *replayer) sendGroup(ctx context.Context, b *sample.Batch) (tally, error) {
	h := &replayHandler{r: r, ctx: ctx}
	if err := r.policy.Deliver(ctx, r.client, &r.enc, *b, nil, h); err != nil {
		if remotewrite.ClassOf(err) == remotewrite.Unauthorized {
			return tally{}, fmt.Errorf("%w: %v", ErrReceiverRefused, err)
		}
		return tally{}, err
	}
	if len(h.park) > 0 {
		// Kept before the progress says the group is done: a failure
		// here replays the group again, nothing is lost.
		if err := r.park(sample.Batch{Samples: h.park}); err != nil {
			return tally{}, err
		}
		h.t.parked += int64(len(h.park))
	}
	return h.t, nil
}

// park keeps samples the receiver refused for their age in the parked
// area of the replay's buffer file, committed and fsynced.
func (r *replayer) park(b sample.Batch) error {
	if r.parked == nil {
		if err := os.MkdirAll(r.parkedDir, 0o700); err != nil {
			return fmt.Errorf("parked samples: %w", err)
		}
		path := buffer.EndpointFile(r.parkedDir, ParkedFile).Path
		s, _, err := buffer.OpenStore(path, buffer.StoreOptions{})
		if err != nil {
			return fmt.Errorf("parked samples: %w", err)
		}
		r.parked, r.sum.ParkedPath = s, path
		r.log.Warn("receiver refused samples for their age: parking them, not dropping them; give the receiver an out-of-order window (and declare it as out_of_order_time_window), or run redwire backfill",
			"parked", path, "backfill", "redwire backfill --buffer.path="+r.parkedDir+" -o DIR")
	}
	if _, err := r.parked.Park(b); err != nil {
		return fmt.Errorf("parking samples in %s: %w", r.sum.ParkedPath, err)
	}
	return nil
}

func (r *replayer) closeParked() {
	if r.parked != nil {
		_ = r.parked.Close()
	}
}

// replayHandler counts what the receiver did with one group of records.
type replayHandler struct {
	r     *replayer
	ctx   context.Context
	t     tally
	tries int
	park  []sample.Sample // refused for their age
}

func (h *replayHandler) Request(int, time.Duration, error) { h.r.sum.Requests++ }

func (h *replayHandler) Answered(part *sample.Batch, err error) {
	if err == nil {
		h.t.sent += int64(part.Len())
		return
	}
	if remotewrite.CauseOf(err) == remotewrite.CauseAge {
		h.park = append(h.park, part.Samples...)
		return
	}
	var re *remotewrite.Error
	errors.As(err, &re)
	reason := "encode"
	switch {
	case re != nil && re.StatusCode == http.StatusRequestEntityTooLarge:
		reason = "too_large"
	case re != nil && re.StatusCode != 0:
		reason = "http_" + strconv.Itoa(re.StatusCode)
	}
	if reason != "encode" {
		h.r.log.Warn("receiver rejected samples; dropping them", "err", err, "samples", part.Len())
	}
	h.t.drop(reason, part.Len())
}

// FellBack tells once that the receiver takes 1.0 only.
func (h *replayHandler) FellBack(from, to remotewrite.Message, err error) {
	h.r.log.Warn("receiver does not take "+string(from)+"; sending "+string(to)+" from now on", "err", err)
}

func (h *replayHandler) Failed(err error, wait time.Duration) bool {
	if remotewrite.ClassOf(err) == remotewrite.Unauthorized {
		return false
	}
	level := slog.LevelDebug
	if h.tries == 0 {
		level = slog.LevelWarn
	}
	h.tries++
	h.r.sum.Retries++
	h.r.log.Log(h.ctx, level, "remote write failed; retrying", "err", err, "class", remotewrite.ClassOf(err).String(), "wait", wait)
	return true
}

// save writes the progress file atomically and durably: a temp file,
// fsynced, renamed over the old one, and the directory fsynced.
func (r *replayer) save(rf *replayFile) error {
	rf.state.Updated = time.Now().UTC()
	b, err := json.MarshalIndent(rf.state, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(rf.progress)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(rf.progress)+".tmp-*")
	if err != nil {
		return fmt.Errorf("progress file: %w", err)
	}
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), rf.progress)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("progress file %s: %w", rf.progress, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
