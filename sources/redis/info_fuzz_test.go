package redis

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/sample"
)

// FuzzParseInfo feeds arbitrary replies through ParseInfo and EmitInfo. It
// must never panic, the parse must hold only well-formed fields, and the
// samples must pass checkScrape: valid names, UTF-8 label values, no NaN
// or Inf (only text that is a decimal number becomes a value), one sample
// per series. Seeds are every capture plus replies that are odd on
// purpose; interesting inputs found by fuzzing are kept in
// testdata/fuzz/FuzzParseInfo.
func FuzzParseInfo(f *testing.F) {
	captures, err := filepath.Glob(filepath.Join("testdata", "info", "*.txt"))
	if err != nil || len(captures) == 0 {
		f.Fatalf("no captures: %v", err)
	}
	for _, name := range captures {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	for _, odd := range []string{
		"",
		"#",
		"# \r\n:",
		"key:",
		":value",
		"-ERR wrong\r\n",
		"# Server\r\nredis_version:1\r\n\r\n\r\n",
		"# Keyspace\ndb0:keys=1,expires=0,avg_ttl=NaN,subexpiry=Inf\ndb1:=,=,,keys=2,expires=2\ndb:keys=1,expires=1\n",
		"# Replication\nrole:slave\nmaster_host:\nmaster_link_status:up\nslave0:offset=1e999,lag=-0\nslave1:ip=\xff,port=1,state=x,offset=1\n",
		"# Commandstats\ncmdstat_a:calls=1,calls=2,usec=3\n# Latencystats\nlatency_percentiles_usec_a:p50=1,pNaN=2,p=3,p99.9=,x=1\n",
		"# Errorstats\nerrorstat_:count=1\nerrorstat_ERR:count\nerrorstat_X:count=0x1\n",
		"# TLS\ntls__cert_serial:1\ntls_server_cert_serial:\n",
		"# CPU\nused_active_time_io_thread_:1\nused_active_time_io_thread_1:2\nused_active_time_io_thread_x:3\n",
		"# Server\nup:1\ninstance_info:2\nredis_mode:\nserver_mode:cluster\n\xc3\x28:1\n",
		strings.Repeat("# S\n", 100),
	} {
		f.Add(odd)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		info, err := ParseInfo(raw)
		if err != nil {
			if info != nil {
				t.Fatal("ParseInfo returned both an Info and an error")
			}
			return
		}
		for _, s := range info.Sections {
			if s.Name != strings.ToLower(s.Name) {
				t.Errorf("section name %q not lower-case", s.Name)
			}
			for _, f := range s.Fields {
				if !isInfoKey(f.Key) || strings.ContainsAny(f.Key, ":\r\n") || strings.Contains(f.Value, "\n") {
					t.Errorf("malformed field %q:%q", f.Key, f.Value)
				}
			}
		}
		sc := sample.NewScrape(infoTestTime, labels.FromStrings("instance", "fuzz", "job", "redis"))
		EmitInfo(sc, info)
		checkScrape(t, sc)
	})
}
