// Command redwire polls Redis and pushes its metrics to a Prometheus
// remote-write receiver, buffering locally while the link is down.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	goredis "github.com/redis/go-redis/v9"

	"github.com/redwire/redwire/agent"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: testable, and every exit path returns.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if version.Version == "" {
		version.Version = "dev"
	}
	app := kingpin.New("redwire", "Polls Redis and pushes its metrics with Prometheus remote write, buffering locally while the receiver is unreachable.")
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	app.Version(version.Print("redwire"))
	app.HelpFlag.Short('h')
	// --help and --version end the program; let run return instead of exiting.
	done := false
	app.Terminate(func(int) { done = true })

	configFile := app.Flag("config.file", "YAML config file (optional: flags alone are enough to run).").String()
	watch := app.Flag("config.watch", "Reload the config when the file changes (as SIGHUP and POST /-/reload do).").Bool()
	flags := addAgentFlags(app)
	logCfg := &promslog.Config{Writer: stderr}
	promslogflag.AddFlags(app, logCfg)

	runCmd := app.Command("run", "Run the agent (the default).").Default()
	checkCmd := app.Command("check-config", "Validate the config and print it with defaults applied and secrets redacted.")
	tools := addTools(app, configFile, flags, logCfg) // buffer inspect|export, replay, backfill: cmd/redwire/buffer.go

	cmd, err := app.Parse(canonicalFlags(app, args))
	if done {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "redwire: %v\n", err)
		return 2
	}
	if tools.handles(cmd) {
		return tools.exec(ctx, cmd, stdout, stderr)
	}

	cfg, err := loadConfig(*configFile, flags)
	if err != nil {
		fmt.Fprintf(stderr, "redwire: invalid config: %v\n", err)
		return 1
	}
	switch cmd {
	case checkCmd.FullCommand():
		fmt.Fprint(stdout, cfg.String())
		return 0
	case runCmd.FullCommand():
	}

	log := promslog.New(logCfg)
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector("redwire"),
	)
	// go-redis logs dial failures itself, every scrape; the agent already
	// logs a target's state changes, so keep the library's lines at debug.
	goredis.SetLogger(redisLogger{log})
	log.Info("starting redwire", "version", version.Info(), "build_context", version.BuildContext())
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	opts := agent.Options{
		Logger: log, Registry: reg, Version: version.Version,
		Reload:       func() (*agent.Config, error) { return loadConfig(*configFile, flags) },
		ReloadSignal: hup, ConfigFile: *configFile, WatchConfig: *watch,
	}
	if err := agent.Run(ctx, cfg, opts); err != nil {
		log.Error("redwire stopped", "err", err)
		return 1
	}
	return 0
}

// redisLogger sends go-redis' internal log lines to slog at debug level.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}

func loadConfig(path string, flags *overrides) (*agent.Config, error) {
	cfg := &agent.Config{}
	if path != "" {
		var err error
		if cfg, err = agent.LoadFile(path); err != nil {
			return nil, err
		}
	}
	if err := flags.apply(cfg); err != nil {
		return nil, err
	}
	if err := cfg.Finalize(); err != nil {
		if path != "" {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return nil, err
	}
	return cfg, nil
}
