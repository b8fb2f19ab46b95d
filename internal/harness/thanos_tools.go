package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

// ThanosBucket is an object-storage bucket for one test, kept on the local
// filesystem (Thanos's FILESYSTEM objstore, which lays a block out as
// <Dir>/<ULID>/{meta.json,index,chunks/}, as S3 or GCS would under those
// keys). Thanos (ThanosVersion, built once by make deps) reads and writes
// it: Tool runs `thanos tools bucket`, StartThanosStore serves it.
type ThanosBucket struct {
	bin string
	// Dir is the bucket's root; ConfigFile the objstore config naming it.
	Dir, ConfigFile string
}

// NewThanosBucket makes an empty bucket in a temp dir, with its objstore
// config file beside it.
func NewThanosBucket(t testing.TB) *ThanosBucket {
	t.Helper()
	b := &ThanosBucket{bin: cachedBinary(t, "thanos", ThanosVersion)}
	root := t.TempDir()
	b.Dir = filepath.Join(root, "bucket")
	b.ConfigFile = filepath.Join(root, "bucket.yml")
	if err := os.Mkdir(b.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("type: FILESYSTEM\nconfig:\n  directory: %q\n", b.Dir)
	if err := os.WriteFile(b.ConfigFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// Tool runs `thanos tools bucket <args> --objstore.config-file=<bucket>`
// to its end and returns its standard output (ls prints one block a
// line there; the log goes to standard error). A non-zero exit is an
// error that carries the command line and both outputs.
func (b *ThanosBucket) Tool(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"tools", "bucket"}, args...)
	full = append(full, "--objstore.config-file="+b.ConfigFile)
	cmd := exec.CommandContext(ctx, b.bin, full...)
	cmd.Dir = filepath.Dir(b.Dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// The parent-death signal follows the forking thread (see child.run).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w\n%s", commandLine(b.bin, full), err, tail(stdout.String()+stderr.String()))
	}
	return stdout.String(), nil
}

// ThanosBlockMeta is what a test checks in a bucket's <ULID>/meta.json:
// the Prometheus TSDB fields and the "thanos" section that Thanos adds
// to a block it uploads.
type ThanosBlockMeta struct {
	ULID    string `json:"ulid"`
	MinTime int64  `json:"minTime"`
	MaxTime int64  `json:"maxTime"`
	Stats   struct {
		NumSamples uint64 `json:"numSamples"`
		NumSeries  uint64 `json:"numSeries"`
	} `json:"stats"`
	Thanos struct {
		Labels map[string]string `json:"labels"` // the external labels
		Source string            `json:"source"` // who wrote the block
	} `json:"thanos"`
}

// Meta reads the meta.json of the block ulid in the bucket.
func (b *ThanosBucket) Meta(ulid string) (ThanosBlockMeta, error) {
	var m ThanosBlockMeta
	path := filepath.Join(b.Dir, ulid, "meta.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, fmt.Errorf("decode %s: %w", path, err)
	}
	return m, nil
}

// ThanosStore is Thanos Store serving a ThanosBucket over the gRPC Store
// API, with a Thanos Query reading it beside it for the Prometheus HTTP
// API, as ThanosReceive has one. Query runs with
// --no-query.partial-response, so a query that cannot reach Store fails
// rather than answering with nothing. Its answers carry the blocks'
// external labels (meta.json's thanos.labels) on every series.
type ThanosStore struct {
	store, query *server
	api          *apiClient
	bucket       *ThanosBucket

	// Each is written only by args, inside launch with that server's mu
	// held; both start once.
	grpcPort, queryGRPCPort int
}

// StartThanosStore starts Thanos Store on bucket and a Thanos Query
// reading it, on free loopback ports, and returns once Store has synced
// the bucket's blocks (its /-/ready waits for the first sync) and Query
// reaches it. Blocks uploaded later are not seen: Store syncs again only
// every --sync-block-duration.
func StartThanosStore(t testing.TB, bucket *ThanosBucket) *ThanosStore {
	t.Helper()
	ts := &ThanosStore{
		store:  newServerAt(t, "thanos-store", bucket.bin),
		query:  newServerAt(t, "thanos-query", bucket.bin),
		api:    newAPIClient("", nil),
		bucket: bucket,
	}
	t.Cleanup(ts.api.http.CloseIdleConnections)
	ts.store.args = ts.storeArgs
	ts.store.probe = ts.storeProbe
	ts.query.args = ts.queryArgs
	ts.query.probe = ts.queryProbe
	ts.store.start(FreePort(t))
	ts.query.start(FreePort(t))
	ts.api.base = "http://" + ts.query.hostPort()
	return ts
}

func (ts *ThanosStore) storeArgs(port int) []string {
	ts.grpcPort = FreePort(ts.store.t)
	return []string{
		"store",
		"--data-dir=" + filepath.Join(ts.store.dir, "data"),
		"--objstore.config-file=" + ts.bucket.ConfigFile,
		"--http-address=127.0.0.1:" + strconv.Itoa(port),
		"--grpc-address=127.0.0.1:" + strconv.Itoa(ts.grpcPort),
		"--http-grace-period=0s",
		"--grpc-grace-period=0s",
	}
}

// storeProbe is ready when Store holds its ports and answers /-/ready,
// which it does only after its first sync of the bucket.
func (ts *ThanosStore) storeProbe(ctx context.Context, port, pid int) error {
	for _, p := range []int{port, ts.grpcPort} {
		if err := listensOn(pid, p); err != nil {
			return err
		}
	}
	_, err := ts.api.fetch(ctx, "http://127.0.0.1:"+strconv.Itoa(port)+"/-/ready")
	return err
}

func (ts *ThanosStore) queryArgs(port int) []string {
	ts.queryGRPCPort = FreePort(ts.query.t)
	return []string{
		"query",
		"--http-address=127.0.0.1:" + strconv.Itoa(port),
		"--grpc-address=127.0.0.1:" + strconv.Itoa(ts.queryGRPCPort),
		"--endpoint.sd-config=endpoints: [{address: '127.0.0.1:" + strconv.Itoa(ts.grpcPort) + "'}]",
		"--no-query.partial-response",
		"--endpoint.info-timeout=" + model.Duration(thanosInfoInterval).String(),
		"--http-grace-period=0s",
		"--grpc-grace-period=0s",
	}
}

// queryProbe is ready when Query holds its ports, answers /-/ready, and
// lists our Store without an error: before that a query finds nothing.
func (ts *ThanosStore) queryProbe(ctx context.Context, port, pid int) error {
	for _, p := range []int{port, ts.queryGRPCPort} {
		if err := listensOn(pid, p); err != nil {
			return err
		}
	}
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	if _, err := ts.api.fetch(ctx, base+"/-/ready"); err != nil {
		return err
	}
	body, err := ts.api.fetch(ctx, base+"/api/v1/stores")
	if err != nil {
		return err
	}
	var stores struct {
		Data map[string][]struct {
			Name      string  `json:"name"`
			LastError *string `json:"lastError"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &stores); err != nil {
		return fmt.Errorf("decode %s/api/v1/stores: %w", base, err)
	}
	want := "127.0.0.1:" + strconv.Itoa(ts.grpcPort)
	for _, s := range stores.Data["store"] {
		if s.Name != want {
			continue
		}
		if s.LastError != nil {
			return fmt.Errorf("thanos query reaches store %s with an error: %s", want, *s.LastError)
		}
		return nil
	}
	return fmt.Errorf("thanos query on %s does not list store %s yet: %s", base, want, snippet(body))
}

// QueryURL is the Thanos Query, which serves the Prometheus HTTP API.
func (ts *ThanosStore) QueryURL() string { return "http://" + ts.query.hostPort() }

// Dir is Store's temp dir: its cache (data/) and thanos-store.log.
func (ts *ThanosStore) Dir() string { return ts.store.dir }

// Samples returns the raw samples of selector over the last window, with
// their own timestamps, as Query reads them from Store.
func (ts *ThanosStore) Samples(ctx context.Context, selector string, window time.Duration) ([]RangeSeries, error) {
	return ts.api.samples(ctx, selector, window)
}

// Stop shuts Query and Store down with SIGTERM and waits. Cleanup does it
// too; a test stops them early only to free the machine.
func (ts *ThanosStore) Stop() {
	ts.store.t.Helper()
	ts.query.stop(syscall.SIGTERM)
	ts.store.stop(syscall.SIGTERM)
}
