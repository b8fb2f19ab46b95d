package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/common/version"

	"github.com/redwire/redwire/agent"
	"github.com/redwire/redwire/offline"
	"github.com/redwire/redwire/remotewrite"
)

// replayArgs are the replay command's own flags; the receiver is
// --remote-write.url (or --config.file's remote_write) as for the agent.
type replayArgs struct {
	files                        []string
	progressFile, endpoint       string
	parkedDir                    string
	skipCorrupt                  bool
	headers                      []string
	user, passwordFile, bearer   string
	caFile, certFile, keyFile    string
	serverName                   string
	insecureSkipVerify, noStatus bool
}

func (t *tools) addReplay(app *kingpin.Application) {
	var a replayArgs
	c := app.Command("replay", "Push export files (from redwire buffer export) to --remote-write.url, oldest first, resumably.")
	c.Arg("file", "Export files.").Required().ExistingFilesVar(&a.files)
	c.Flag("progress.file", "Progress file (default FILE.progress); only with a single FILE.").StringVar(&a.progressFile)
	c.Flag("skip-corrupt", "Replay the readable records of a damaged file instead of refusing it.").BoolVar(&a.skipCorrupt)
	c.Flag("endpoint", "remote_write entry of --config.file to use, by name, when it has several.").StringVar(&a.endpoint)
	c.Flag("remote-write.header", "HTTP header as Name=value, e.g. X-Scope-OrgID=tenant. Repeatable.").StringsVar(&a.headers)
	c.Flag("remote-write.basic-auth.username", "Basic auth user.").StringVar(&a.user)
	c.Flag("remote-write.basic-auth.password-file", "File holding the basic auth password.").StringVar(&a.passwordFile)
	c.Flag("remote-write.bearer-token-file", "File holding a bearer token (authorization.credentials_file).").StringVar(&a.bearer)
	c.Flag("remote-write.tls.ca-file", "CA certificate to verify the receiver.").StringVar(&a.caFile)
	c.Flag("remote-write.tls.cert-file", "Client certificate.").StringVar(&a.certFile)
	c.Flag("remote-write.tls.key-file", "Client key.").StringVar(&a.keyFile)
	c.Flag("remote-write.tls.server-name", "Server name to verify.").StringVar(&a.serverName)
	c.Flag("remote-write.tls.insecure-skip-verify", "Do not verify the receiver's certificate.").BoolVar(&a.insecureSkipVerify)
	c.Flag("parked-dir", "Where samples the receiver refuses for their age are kept (a buffer file's parked area, for redwire backfill --buffer.path); default: parked/ beside the first FILE.").StringVar(&a.parkedDir)
	c.Flag("no-progress", "No progress bar even on a terminal.").BoolVar(&a.noStatus)
	t.run[c.FullCommand()] = func(ctx context.Context, cfg *agent.Config, stdout, stderr io.Writer) int {
		return replayCmd(ctx, cfg, a, t.logCfg, stdout, stderr)
	}
}

// replayEndpoint picks the receiver and applies the replay flags to it.
func replayEndpoint(cfg *agent.Config, a replayArgs) (remotewrite.EndpointConfig, error) {
	var ec remotewrite.EndpointConfig
	var names []string
	found := false
	for _, e := range cfg.RemoteWrite {
		names = append(names, e.Label())
		if a.endpoint == "" || e.Name == a.endpoint || e.Label() == a.endpoint {
			ec, found = e, true
		}
	}
	switch {
	case len(cfg.RemoteWrite) == 0:
		return ec, fmt.Errorf("no receiver: give --remote-write.url, or --config.file with a remote_write entry")
	case a.endpoint == "" && len(cfg.RemoteWrite) > 1:
		return ec, fmt.Errorf("--config.file has %d remote_write entries (%s): choose one with --endpoint", len(names), strings.Join(names, ", "))
	case !found:
		return ec, fmt.Errorf("--endpoint %q: no such remote_write entry (have %s)", a.endpoint, strings.Join(names, ", "))
	}
	if len(a.headers) > 0 {
		h := map[string]string{}
		for k, v := range ec.Headers {
			h[k] = v
		}
		for _, kv := range a.headers {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return ec, fmt.Errorf("--remote-write.header %q: want Name=value", kv)
			}
			h[k] = v
		}
		ec.Headers = h
	}
	hc := &ec.HTTPClientConfig
	if a.user != "" || a.passwordFile != "" {
		hc.BasicAuth = &config.BasicAuth{Username: a.user, PasswordFile: a.passwordFile}
	}
	if a.bearer != "" {
		hc.Authorization = &config.Authorization{Type: "Bearer", CredentialsFile: a.bearer}
	}
	tls := &hc.TLSConfig
	for _, s := range []struct {
		dst *string
		v   string
	}{{&tls.CAFile, a.caFile}, {&tls.CertFile, a.certFile}, {&tls.KeyFile, a.keyFile}, {&tls.ServerName, a.serverName}} {
		if s.v != "" {
			*s.dst = s.v
		}
	}
	if a.insecureSkipVerify {
		tls.InsecureSkipVerify = true
	}
	if err := ec.Validate(); err != nil {
		return ec, fmt.Errorf("receiver %s: %w", ec.Label(), err)
	}
	return ec, nil
}

func replayCmd(ctx context.Context, cfg *agent.Config, a replayArgs, logCfg *promslog.Config, stdout, stderr io.Writer) int {
	ec, err := replayEndpoint(cfg, a)
	if err != nil {
		fmt.Fprintf(stderr, "redwire: replay: %v\n", err)
		return 2
	}
	opts := offline.ReplayOptions{Endpoint: ec, Version: version.Version, ProgressFile: a.progressFile,
		SkipCorrupt: a.skipCorrupt, MaxSamplesPerSecond: cfg.Replay.MaxSamplesPerSecond, Logger: promslog.New(logCfg),
		ParkedDir: a.parkedDir}
	bar := newProgressBar(stderr, !a.noStatus)
	opts.Progress = bar.update
	sum, err := offline.ReplayFiles(ctx, a.files, opts)
	bar.end()
	printSummary(stdout, sum)
	if err != nil {
		fmt.Fprintf(stderr, "redwire: replay: %v\n", err)
		return 1
	}
	return 0
}

func printSummary(w io.Writer, s offline.ReplaySummary) {
	fmt.Fprintf(w, "replayed %d file(s) in %s: %d samples sent in %d requests (%d retries)", len(s.Files),
		s.Duration.Round(time.Millisecond), s.SamplesSent, s.Requests, s.Retries)
	if s.Message != "" {
		fmt.Fprintf(w, " as %s", s.Message)
	}
	if s.SamplesAlreadyDone > 0 {
		fmt.Fprintf(w, "; %d samples were done by an earlier run", s.SamplesAlreadyDone)
	}
	fmt.Fprintln(w)
	reasons := make([]string, 0, len(s.Dropped))
	for r := range s.Dropped {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		fmt.Fprintf(w, "dropped %d samples: %s\n", s.Dropped[r], r)
	}
	if s.Parked > 0 {
		fmt.Fprintf(w, "parked %d samples the receiver refused for their age in %s (not dropped: redwire backfill --buffer.path=%s writes them into TSDB blocks)\n",
			s.Parked, s.ParkedPath, filepath.Dir(s.ParkedPath))
	}
	if s.CorruptRecords > 0 {
		fmt.Fprintf(w, "skipped %d damaged part(s) of export files\n", s.CorruptRecords)
	}
}

// progressBar draws one status line on a terminal, at most ten times a
// second; elsewhere it draws nothing.
type progressBar struct {
	w    io.Writer
	on   bool
	last time.Time
	drew bool
}

func newProgressBar(w io.Writer, want bool) *progressBar {
	f, ok := w.(*os.File)
	on := false
	if ok && want {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			on = true
		}
	}
	return &progressBar{w: w, on: on}
}

func (p *progressBar) update(r offline.ReplayProgress) {
	if !p.on || (time.Since(p.last) < 100*time.Millisecond && r.SamplesDone < r.SamplesTotal) {
		return
	}
	p.last = time.Now()
	const width = 30
	frac := 1.0
	if r.SamplesTotal > 0 {
		frac = float64(r.SamplesDone) / float64(r.SamplesTotal)
	}
	n := int(frac * width)
	fmt.Fprintf(p.w, "\r[%s%s] %3.0f%% %d/%d samples  file %d/%d", strings.Repeat("=", n), strings.Repeat(" ", width-n),
		frac*100, r.SamplesDone, r.SamplesTotal, r.FileIndex+1, r.Files)
	p.drew = true
}

func (p *progressBar) end() {
	if p.drew {
		fmt.Fprintln(p.w)
	}
}
