package discovery

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// masterAddr reads a SENTINEL get-master-addr-by-name reply, [ip, port],
// as host:port.
func masterAddr(reply []string) (string, error) {
	if len(reply) != 2 {
		return "", fmt.Errorf("SENTINEL get-master-addr-by-name: unexpected reply %q", reply)
	}
	addr, err := sentinelAddr(reply[0], reply[1])
	if err != nil {
		return "", fmt.Errorf("SENTINEL get-master-addr-by-name: reply %q: %w", reply, err)
	}
	return addr, nil
}

// sentinelAddr joins an ip and port a sentinel reports into host:port, the
// address of a target. It is not taken on trust: an empty ip would point
// the target at the local server, and one holding URL syntax (/ ? # @) at
// another server than the one named, so both are refused, as is a port
// that is not a number in 1-65535.
func sentinelAddr(ip, port string) (string, error) {
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 || strconv.FormatUint(p, 10) != port {
		return "", fmt.Errorf("port %q: want a number in 1-65535", port)
	}
	addr := net.JoinHostPort(ip, port)
	if u, err := url.Parse("redis://" + addr); ip == "" || err != nil || u.Host != addr {
		return "", fmt.Errorf("ip %q: not a host name or address", ip)
	}
	return addr, nil
}

// instanceAddrs are the host:port of SENTINEL replicas / sentinels
// entries. Instances flagged down stay: a down replica is exactly what its
// redis_up 0 should show. Entries without a usable address are left out.
func instanceAddrs(entries []map[string]string) []string {
	var out []string
	for _, e := range entries {
		addr, err := sentinelAddr(e["ip"], e["port"])
		if err != nil {
			continue
		}
		out = append(out, addr)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// switchMasterAddr reads a +switch-master payload, "<name> <old ip> <old
// port> <new ip> <new port>": the master's new host:port, if the payload is
// about master and names a usable address.
func switchMasterAddr(payload, master string) (addr string, ok bool) {
	f := strings.Fields(payload)
	if len(f) != 5 || f[0] != master {
		return "", false
	}
	addr, err := sentinelAddr(f[3], f[4])
	return addr, err == nil
}
