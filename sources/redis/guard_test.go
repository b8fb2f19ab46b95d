package redis

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// wellFormed are replies the guard must pass untouched, whatever the
// chunking: the shapes Redis sends in RESP2 and RESP3.
var wellFormed = []string{
	"+OK\r\n",
	"-ERR unknown command\r\n",
	":42\r\n",
	"$5\r\nhello\r\n",
	"$0\r\n\r\n",
	"$-1\r\n",
	"*-1\r\n",
	"*0\r\n",
	"*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
	"*3\r\n*2\r\n:1\r\n:2\r\n*0\r\n$3\r\nabc\r\n",
	"%2\r\n+a\r\n:1\r\n+b\r\n*1\r\n_\r\n",
	"|1\r\n+ttl\r\n:3600\r\n$2\r\nok\r\n",
	"*2\r\n|1\r\n+a\r\n:1\r\n:5\r\n:6\r\n",
	">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nmsg\r\n",
	",3.14\r\n#t\r\n(12345678901234567890\r\n=8\r\ntxt:abcd\r\n!3\r\nbad\r\n~1\r\n:1\r\n",
	"$12\r\nline\r\nbreaks\r\n",
}

// TestGuardPassesRealReplies feeds every reply, and all of them back to
// back, split at every byte: the guard must accept them and end each one
// with its budgets reset.
func TestGuardPassesRealReplies(t *testing.T) {
	all := strings.Join(wellFormed, "")
	for _, reply := range append(wellFormed, all) {
		for cut := 0; cut <= len(reply); cut++ {
			g := replyGuard{maxBytes: 1 << 10, maxElements: 100, maxLine: 100}
			if err := g.feed([]byte(reply[:cut])); err != nil {
				t.Fatalf("%q cut at %d: first part: %v", reply, cut, err)
			}
			if err := g.feed([]byte(reply[cut:])); err != nil {
				t.Fatalf("%q cut at %d: second part: %v", reply, cut, err)
			}
			if g.bytes != 0 || g.elements != 0 || len(g.open) != 0 || g.body != 0 || len(g.line) != 0 {
				t.Fatalf("%q cut at %d: not at a reply boundary after it: %+v", reply, cut, g)
			}
		}
	}
}

func TestGuardLimits(t *testing.T) {
	for _, tc := range []struct{ name, reply, want string }{
		{"huge bulk", "$99999999999\r\n", "bulk string of 99999999999 bytes"},
		{"huge array", "*99999999999\r\n", "aggregates of 99999999999 elements"},
		{"huge map", "%9999999999\r\n", "map of 9999999999 entries"},
		{"elements add up", "*2\r\n*60\r\n", "aggregates of 62 elements"},
		{"endless line", "+" + strings.Repeat("a", 200), "line longer than 100 bytes"},
		{"long body", "$505\r\n" + strings.Repeat("a", 510), "reply larger than 512 bytes"},
		{"many small", "*50\r\n" + strings.Repeat("$9\r\n123456789\r\n", 50), "reply larger than 512 bytes"},
		{"deep", strings.Repeat("*1\r\n", 40), "nested deeper than 32"},
		{"not RESP", "HTTP/1.1 400 Bad Request\r\n", "not RESP"},
		{"bad length", "$abc\r\n", "bad length"},
		{"negative length", "*-2\r\n", "bad length"},
		{"bare newline", "+OK\n", "malformed line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := replyGuard{maxBytes: 512, maxElements: 60, maxLine: 100}
			err := g.feed([]byte(tc.reply))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one with %q", err, tc.want)
			}
		})
	}
}

// FuzzReplyGuard: the guard never panics and its verdict and state do not
// depend on how the bytes are split across reads.
func FuzzReplyGuard(f *testing.F) {
	for _, r := range wellFormed {
		f.Add([]byte(r), uint16(len(r)/2))
	}
	f.Add([]byte("$99999999999\r\n"), uint16(3))
	f.Add([]byte("|0\r\n|1\r\n+a\r\n+b\r\n+c\r\n"), uint16(5))
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		at := int(cut) % (len(data) + 1)
		whole := replyGuard{maxBytes: 4096, maxElements: 64, maxLine: 256}
		werr := whole.feed(data)
		split := replyGuard{maxBytes: 4096, maxElements: 64, maxLine: 256}
		serr := split.feed(data[:at])
		if serr == nil {
			serr = split.feed(data[at:])
		}
		if (werr == nil) != (serr == nil) {
			t.Fatalf("whole: %v, split at %d: %v", werr, at, serr)
		}
		if werr == nil && (whole.bytes != split.bytes || whole.body != split.body ||
			len(whole.open) != len(split.open) || !bytes.Equal(whole.line, split.line)) {
			t.Fatalf("states differ: whole %+v, split at %d %+v", whole, at, split)
		}
	})
}

// hostileServer answers every read with reply and, if endless is set,
// keeps repeating more of it until the client hangs up. It stands for
// something that is not Redis on a target's port.
func hostileServer(t *testing.T, reply, more string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
					if _, err := c.Write([]byte(reply)); err != nil {
						return
					}
					chunk := []byte(strings.Repeat(more, max(1, 64<<10/max(1, len(more)))))
					for more != "" {
						if _, err := c.Write(chunk); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestHostileServer scrapes servers that answer with replies that would
// make go-redis allocate without bound: each scrape must fail with the
// guard's error, naming the server, instead of taking the process down.
func TestHostileServer(t *testing.T) {
	for _, tc := range []struct{ name, reply, more, want string }{
		{"100 GB bulk string", "$99999999999\r\n", "", "bulk string of 99999999999 bytes"},
		{"array of 10^11 elements", "*99999999999\r\n", "", "aggregates of 99999999999 elements"},
		{"nested arrays", "*1000000\r\n", "*1000000\r\n", "elements"},
		{"endless line", "+", "a", "line longer than"},
		{"bulk over the limit", "$67108865\r\n", "", "bulk string of 67108865 bytes"},
		{"endless array of large bulks", "*100\r\n", "$1000000\r\n" + strings.Repeat("x", 1000000) + "\r\n", "reply larger than"},
		{"not RESP", "SSH-2.0-OpenSSH_9.2\r\n", "", "not RESP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := hostileServer(t, tc.reply, tc.more)
			target, err := NewTarget(TargetConfig{Addr: "redis://" + addr}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer target.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err = target.Scrape(ctx, time.Now())
			if !errors.Is(err, ErrHostileReply) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), addr) {
				t.Errorf("scrape error %v, want %v from %s with %q", err, ErrHostileReply, addr, tc.want)
			}
		})
	}
}
