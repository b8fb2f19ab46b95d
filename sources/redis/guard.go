package redis

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/prometheus/common/config"
)

// Reply limits. go-redis trusts the lengths a server declares: a bulk
// string header of "$99999999999" makes it allocate 100 GB before reading
// a byte, "*99999999999" an array of that many elements, and a line with
// no end grows its buffer forever. Something pretending to be Redis (a
// misrouted port, a broken proxy, an attacker on the path) could take the
// agent down, and the backlog with it. The guard checks every reply header
// against these limits as the bytes arrive, before go-redis sees them.
// Real replies stay far below: INFO is a few KB, CLUSTER NODES of a
// 1000-node cluster about 1 MB.
const (
	// maxReplyBytes bounds one top-level reply, nested elements included.
	maxReplyBytes = 64 << 20
	// maxReplyElements bounds the elements all aggregates (arrays, maps,
	// sets) of one reply declare together: go-redis allocates them on the
	// header, before the elements arrive.
	maxReplyElements = 1 << 20
	// maxReplyLine bounds a header or simple-string line.
	maxReplyLine = 1 << 20
	// maxReplyDepth bounds nesting; Redis's own replies nest a few levels.
	maxReplyDepth = 32
)

// ErrHostileReply is wrapped by every error of a reply past the guard's
// limits or not RESP at all.
var ErrHostileReply = errors.New("reply refused")

// dialTimeout matches go-redis's default dial timeout; the scrape context
// usually ends the dial sooner.
const dialTimeout = 5 * time.Second

// Dialer dials Redis (or Sentinel) at addr and guards the connection
// against hostile replies (see maxReplyBytes). With tlsCfg set it dials
// TLS with a config rebuilt from tlsCfg's files on every dial, so a
// rotated CA, certificate or key is picked up at the next reconnect
// without a restart; the server name defaults to the host dialled.
func Dialer(tlsCfg *config.TLSConfig) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: dialTimeout, KeepAlive: 5 * time.Minute}
		if tlsCfg == nil {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return newGuardConn(c), nil
		}
		tc, err := config.NewTLSConfig(tlsCfg)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		if tc.ServerName == "" {
			tc.ServerName, _, _ = net.SplitHostPort(addr)
		}
		td := tls.Dialer{NetDialer: &d, Config: tc}
		c, err := td.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return newGuardConn(c), nil
	}
}

// guardConn follows the RESP framing of what it reads and fails the read
// that would take a reply past a limit. It does not parse values: header
// lines are scanned, bulk bodies skipped by length.
type guardConn struct {
	net.Conn
	r   replyGuard
	err error // sticky: once refused, the connection is done
}

func newGuardConn(c net.Conn) *guardConn {
	return &guardConn{Conn: c, r: replyGuard{maxBytes: maxReplyBytes, maxElements: maxReplyElements, maxLine: maxReplyLine}}
}

func (c *guardConn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.Conn.Read(p)
	if gerr := c.r.feed(p[:n]); gerr != nil {
		// Nothing of the read reaches go-redis: it fails the command with
		// this error and drops the connection.
		c.err = fmt.Errorf("%w from %s: %w", ErrHostileReply, c.RemoteAddr(), gerr)
		c.Conn.Close()
		return 0, c.err
	}
	return n, err
}

// replyGuard is the framing state machine. Its zero limits mean no reply
// at all is accepted; newGuardConn sets them.
type replyGuard struct {
	maxBytes, maxElements, maxLine int

	line     []byte // header line so far, up to maxLine
	body     int    // bytes of a bulk body (with its CRLF) still to skip
	open     []aggregate
	bytes    int // of the current top-level reply
	elements int // declared by the current top-level reply's aggregates
}

// aggregate is an array, set, push or map still waiting for elements.
type aggregate struct {
	left int
	attr bool // an attribute map: the value it annotates follows it
}

// feed advances the machine over b.
func (g *replyGuard) feed(b []byte) error {
	for len(b) > 0 {
		if g.body > 0 {
			n := min(g.body, len(b))
			if err := g.count(n); err != nil {
				return err
			}
			g.body -= n
			b = b[n:]
			if g.body == 0 {
				g.done()
			}
			continue
		}
		i := 0
		for i < len(b) && b[i] != '\n' {
			i++
		}
		if len(g.line)+i > g.maxLine {
			return fmt.Errorf("line longer than %d bytes", g.maxLine)
		}
		if i == len(b) { // line continues in the next read
			if err := g.count(i); err != nil {
				return err
			}
			g.line = append(g.line, b...)
			return nil
		}
		if err := g.count(i + 1); err != nil {
			return err
		}
		g.line = append(g.line, b[:i+1]...)
		b = b[i+1:]
		err := g.header(g.line)
		g.line = g.line[:0]
		if err != nil {
			return err
		}
	}
	return nil
}

// count adds n bytes to the current reply.
func (g *replyGuard) count(n int) error {
	g.bytes += n
	if g.bytes > g.maxBytes {
		return fmt.Errorf("reply larger than %d bytes", g.maxBytes)
	}
	return nil
}

// header handles one complete line that starts an element.
func (g *replyGuard) header(line []byte) error {
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return fmt.Errorf("malformed line %.40q", line)
	}
	typ, arg := line[0], line[1:len(line)-2]
	switch typ {
	case '+', '-', ':', ',', '#', '(', '_':
		g.done()
		return nil
	case '$', '!', '=':
		n, err := g.length(typ, arg)
		if err != nil {
			return err
		}
		if n < 0 {
			g.done()
			return nil
		}
		if n > g.maxBytes {
			return fmt.Errorf("bulk string of %d bytes, limit %d", n, g.maxBytes)
		}
		g.body = n + 2
		return nil
	case '*', '~', '>', '%', '|':
		n, err := g.length(typ, arg)
		if err != nil {
			return err
		}
		if n < 0 {
			g.done()
			return nil
		}
		if typ == '%' || typ == '|' {
			if n > g.maxElements {
				return fmt.Errorf("map of %d entries, limit %d elements", n, g.maxElements)
			}
			n *= 2
		}
		g.elements += n
		if g.elements > g.maxElements {
			return fmt.Errorf("aggregates of %d elements in one reply, limit %d", g.elements, g.maxElements)
		}
		if n == 0 {
			if typ != '|' {
				g.done()
			}
			return nil
		}
		if len(g.open) >= maxReplyDepth {
			return fmt.Errorf("nested deeper than %d", maxReplyDepth)
		}
		g.open = append(g.open, aggregate{left: n, attr: typ == '|'})
		return nil
	default:
		return fmt.Errorf("not RESP: line %.40q", line)
	}
}

// length parses a header's length; -1 is a null.
func (g *replyGuard) length(typ byte, arg []byte) (int, error) {
	n, err := strconv.Atoi(string(arg))
	if err != nil || n < -1 {
		return 0, fmt.Errorf("bad length in %q header %.40q", typ, arg)
	}
	return n, nil
}

// done records that an element ended: it counts against the aggregate it
// belongs to, which may end in turn. The end of a top-level reply resets
// the per-reply budgets.
func (g *replyGuard) done() {
	for len(g.open) > 0 {
		top := &g.open[len(g.open)-1]
		top.left--
		if top.left > 0 {
			return
		}
		attr := top.attr
		g.open = g.open[:len(g.open)-1]
		if attr {
			return // the annotated value is still to come
		}
	}
	g.bytes, g.elements = 0, 0
}
