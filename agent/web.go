package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
)

// webServer serves the status page at /, /metrics, the JSON API,
// /-/healthy, /-/ready and /-/reload, all behind the same
// --web.config.file TLS and auth.
type webServer struct {
	srv    *http.Server
	reload atomic.Pointer[func() error] // POST /-/reload; nil until set
	api    atomic.Pointer[apiSource]    // GET /api/v1/* and /; nil until set
	ln     net.Listener
	ready  atomic.Bool
	done   chan error
}

// startWeb binds the listen address before returning, so a port clash is an
// error at start-up rather than a log line later.
func startWeb(cfg WebConfig, reg *prometheus.Registry, log *slog.Logger) (*webServer, error) {
	if cfg.ConfigFile != "" {
		if err := web.Validate(cfg.ConfigFile); err != nil {
			return nil, fmt.Errorf("web.config_file %s: %w", cfg.ConfigFile, err)
		}
	}
	ln, err := net.Listen("tcp", cfg.ListenAddress)
	if err != nil {
		return nil, fmt.Errorf("web.listen_address %s: %w", cfg.ListenAddress, err)
	}
	w := &webServer{ln: ln, done: make(chan error, 1)}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	if cfg.EnablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	apiHandlers(mux, func() any {
		if src := w.api.Load(); src != nil {
			return src.targets()
		}
		return nil
	}, func() any {
		if src := w.api.Load(); src != nil {
			return src.status()
		}
		return nil
	}, func() any {
		if src := w.api.Load(); src != nil {
			return src.gaps()
		}
		return nil
	})
	mux.Handle("GET /{$}", statusPage(w.api.Load, cfg.EnablePprof))
	mux.HandleFunc("/-/healthy", func(rw http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(rw, "redwire is healthy.")
	})
	mux.HandleFunc("/-/ready", func(rw http.ResponseWriter, _ *http.Request) {
		if !w.ready.Load() {
			http.Error(rw, "redwire is starting.", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(rw, "redwire is ready.")
	})
	mux.HandleFunc("/-/reload", func(rw http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost && r.Method != http.MethodPut {
			rw.Header().Set("Allow", "POST, PUT")
			http.Error(rw, "use POST or PUT to reload the config.", http.StatusMethodNotAllowed)
			return
		}
		reload := w.reload.Load()
		if reload == nil {
			http.Error(rw, "redwire is starting.", http.StatusServiceUnavailable)
			return
		}
		if err := (*reload)(); err != nil {
			http.Error(rw, fmt.Sprintf("failed to reload config: %s", err), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(rw, "config reloaded.")
	})
	w.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	addrs, systemd := []string{cfg.ListenAddress}, false
	flags := &web.FlagConfig{WebListenAddresses: &addrs, WebSystemdSocket: &systemd, WebConfigFile: &cfg.ConfigFile}
	go func() { w.done <- web.Serve(ln, w.srv, flags, log) }()
	return w, nil
}

func (w *webServer) addr() string { return w.ln.Addr().String() }

func (w *webServer) setReady() { w.ready.Store(true) }

func (w *webServer) setReload(f func() error) { w.reload.Store(&f) }

// apiSource is what the JSON API and the status page report, set once
// the agent runs.
type apiSource struct {
	targets func() []targetInfo
	status  func() status
	gaps    func() []gap
}

func (w *webServer) setAPI(targets func() []targetInfo, status func() status, gaps func() []gap) {
	w.api.Store(&apiSource{targets: targets, status: status, gaps: gaps})
}

func (w *webServer) stop(ctx context.Context) error {
	err := w.srv.Shutdown(ctx)
	if serveErr := <-w.done; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
		err = serveErr
	}
	return err
}
