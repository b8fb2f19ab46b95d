package main

import (
	"strings"
	"testing"
)

// TestProtobufMessageFlagAndKey: --remote-write.protobuf-message (or its
// old underscore spelling) sets every endpoint's protobuf_message over the
// file's; a file without it says the default, 1.0; a wrong message names
// the setting.
func TestProtobufMessageFlagAndKey(t *testing.T) {
	f := writeFile(t, "remote_write:\n  - url: http://127.0.0.1:9/api/v1/write\n")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "protobuf_message: prometheus.WriteRequest"},
		{[]string{"--remote-write.protobuf-message=io.prometheus.write.v2.Request"}, "protobuf_message: io.prometheus.write.v2.Request"},
		{[]string{"--remote-write.protobuf_message=io.prometheus.write.v2.Request"}, "protobuf_message: io.prometheus.write.v2.Request"},
	} {
		code, out, errOut := runCLI(t, append([]string{"check-config", "--config.file=" + f}, tc.args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, errOut)
		}
		if !strings.Contains(out, tc.want) {
			t.Errorf("%v: want %q in:\n%s", tc.args, tc.want, out)
		}
	}
	bad := writeFile(t, "remote_write:\n  - url: http://127.0.0.1:9/api/v1/write\n    protobuf_message: v2\n")
	code, _, errOut := runCLI(t, "check-config", "--config.file="+bad)
	if code == 0 || !strings.Contains(errOut, "protobuf_message") || !strings.Contains(errOut, "io.prometheus.write.v2.Request") {
		t.Errorf("exit %d, %q; want an error naming protobuf_message and the messages it takes", code, errOut)
	}
}

// TestNativeHistogramsFlagAndKey: --remote-write.native-histograms turns
// native_histograms on for every endpoint; off is the default, so a
// check-config shows none; on with remote write 1.0 is an error naming
// both settings.
func TestNativeHistogramsFlagAndKey(t *testing.T) {
	f := writeFile(t, "remote_write:\n  - url: http://127.0.0.1:9/api/v1/write\n")
	code, out, errOut := runCLI(t, "check-config", "--config.file="+f)
	if code != 0 || strings.Contains(out, "native_histograms") {
		t.Fatalf("default: exit %d, native_histograms shown (%v): %s%s", code, strings.Contains(out, "native_histograms"), out, errOut)
	}
	code, out, errOut = runCLI(t, "check-config", "--config.file="+f,
		"--remote-write.protobuf-message=io.prometheus.write.v2.Request", "--remote-write.native-histograms")
	if code != 0 || !strings.Contains(out, "native_histograms: true") {
		t.Fatalf("flag: exit %d: %s%s; want native_histograms: true", code, out, errOut)
	}
	v1 := writeFile(t, "remote_write:\n  - url: http://127.0.0.1:9/api/v1/write\n    native_histograms: true\n")
	code, _, errOut = runCLI(t, "check-config", "--config.file="+v1)
	if code == 0 || !strings.Contains(errOut, "native_histograms") || !strings.Contains(errOut, "protobuf_message") || !strings.Contains(errOut, "io.prometheus.write.v2.Request") {
		t.Errorf("exit %d, %q; want an error naming native_histograms, protobuf_message and 2.0's message", code, errOut)
	}
}
