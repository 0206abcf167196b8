/*
Copyright The Flowscope Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Package traffic generates real traffic between the local system's demo
// pods (network namespaces made by hack/lib/pods.sh), for the agents to
// capture. One process runs in each pod's namespace and is a server, a
// client or both:
//
//   - servers (--listen): "tcp:PORT" answers HTTP-like requests, on short
//     or long-lived connections; "udp:PORT" echoes datagrams;
//   - clients (--connect), one goroutine per destination, every --interval:
//     "tcp:IP:PORT" one short connection (connect, request, response,
//     close: a whole SYN..FIN flow each time); "tcplong:IP:PORT" one
//     request on a long-lived connection (reconnecting when it breaks), for
//     periodic records of a flow that does not end; "udp:IP:PORT" a
//     datagram and its echo (to a closed port the kernel drops it with
//     reason NO_SOCKET and answers port unreachable, counted as refused);
//     "icmp:IP" an ICMP or ICMPv6 echo request and its reply (ping socket,
//     else raw socket; see pinger). IPv6 addresses are written in
//     brackets: "tcp:[fd00:10:244:2::2]:8080", "icmp:[fd00:10:244:2::2]".
//
// Real application protocols, for the agents' L7 records (l7server.go,
// l7client.go):
//
//   - "http:PORT" serves HTTP/1.1 (net/http): GET /api/orders 200 with a
//     JSON body, POST /api/fail 500, 404 for anything else such as
//     /api/missing; "http:IP:PORT" asks on one keep-alive connection: GET
//     /api/orders, every 5th request POST /api/fail, every 7th GET
//     /api/missing;
//   - "grpc:PORT" serves gRPC over cleartext HTTP/2 (h2c): the standard
//     health service, SERVING for "" and NotFound for any other service;
//     "grpc:IP:PORT" calls Check(""), Check("missing") and a Watch("")
//     stream read for one message (then cancelled) every interval, on one
//     connection replaced every minute (see grpcConnLifetime);
//   - "dns:PORT" serves DNS (miekg/dns) over UDP and TCP: A and AAAA of
//     the names in --dns-table, SERVFAIL for fail.example., NXDOMAIN for
//     anything else; "dns:IP:PORT" asks A and AAAA of a name of
//     --dns-names (or of --dns-table; one name after the other), A of
//     nonexistent.cluster.local. (NXDOMAIN) and of fail.example.
//     (SERVFAIL) every interval, over UDP, every 10th query over TCP;
//   - "kafka:PORT" runs a one-broker Kafka cluster (franz-go's kfake) with
//     a topic "orders", on the first global IPv4 address of the network
//     namespace (brokers advertise their address: a wildcard will not do;
//     "kafka:IP:PORT" names it); "kafka:IP:PORT" produces a record to
//     "orders" every interval and consumes the topic in a consumer group
//     of its own ("orders-" and --name).
//
// L7 clients and servers count their exchanges by outcome in Stats.Results
// ("GET /api/orders 200", "/grpc.health.v1.Health/Check NotFound",
// "udp A web.shop.svc.cluster.local. NOERROR", "produce"), clients with
// the longest round trip they measured.
//
// Every --report-interval it logs one line per destination and listener
// with the totals since the start, and rewrites --stats-file (JSON) with the
// same numbers; see report.go.
package traffic

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is the command line of flowscope-traffic.
type Config struct {
	// Name identifies the process in its logs, e.g. "shop/web-0".
	Name string
	// Listen and Connect are comma-separated specs, see the package doc.
	Listen, Connect string
	// Interval is the time between two exchanges with one destination.
	Interval time.Duration
	// Timeout bounds one exchange (connect, request, response).
	Timeout time.Duration
	// StartDelay lets the servers of the other pods start before the
	// clients do.
	StartDelay time.Duration
	// ReportInterval is the time between two reports.
	ReportInterval time.Duration
	// StatsFile, when set, is rewritten with the totals at every report.
	StatsFile string
	// RequestSize and ResponseSize are the sizes of a TCP request and of a
	// response's body; UDPSize and ICMPSize those of a UDP payload and of
	// an echo request's data.
	RequestSize, ResponseSize, UDPSize, ICMPSize int
	// DNSTable is a hosts file ("IP NAME..." lines) of the names the DNS
	// servers answer, and that DNS clients ask for when DNSNames is empty.
	DNSTable string
	// DNSNames are comma-separated names DNS clients ask for.
	DNSNames string

	// hosts is DNSTable, read by Run.
	hosts hosts
}

// AddFlags registers the configuration's flags, with their defaults.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Name, "name", "", "name of this process in its logs, e.g. shop/web-0")
	fs.StringVar(&c.Listen, "listen", "", "comma-separated servers to run: tcp:PORT, udp:PORT, http:PORT, grpc:PORT, dns:PORT, kafka:PORT (each also as PROTO:IP:PORT)")
	fs.StringVar(&c.Connect, "connect", "", "comma-separated destinations: tcp:IP:PORT (short connections), tcplong:IP:PORT (one long-lived connection), udp:IP:PORT, icmp:IP, http:IP:PORT, grpc:IP:PORT, dns:IP:PORT, kafka:IP:PORT; IPv6 in brackets")
	fs.DurationVar(&c.Interval, "interval", time.Second, "time between two exchanges with one destination")
	fs.DurationVar(&c.Timeout, "timeout", 2*time.Second, "limit of one exchange (connect, request, response)")
	fs.DurationVar(&c.StartDelay, "start-delay", time.Second, "wait before the first exchange, so that the other pods' servers are up")
	fs.DurationVar(&c.ReportInterval, "report-interval", 10*time.Second, "time between two reports (log lines and --stats-file)")
	fs.StringVar(&c.StatsFile, "stats-file", "", "JSON file rewritten with the totals at every report; empty: none")
	fs.IntVar(&c.RequestSize, "request-size", 128, "bytes of a TCP request (at least the request's headers)")
	fs.IntVar(&c.ResponseSize, "response-size", 1024, "bytes of a TCP response's body")
	fs.IntVar(&c.UDPSize, "udp-size", 64, "bytes of a UDP payload")
	fs.IntVar(&c.ICMPSize, "icmp-size", 56, "bytes of an echo request's data")
	fs.StringVar(&c.DNSTable, "dns-table", "", "hosts file (IP NAME... lines) of the names dns: servers answer (A, AAAA) and dns: clients ask for")
	fs.StringVar(&c.DNSNames, "dns-names", "", "comma-separated names dns: clients ask for (A and AAAA, one name after the other); empty: those of --dns-table")
}

// listenSpec is one --listen item.
type listenSpec struct {
	spec  string // as given
	proto string // tcp, udp, http, grpc, dns or kafka
	addr  netip.Addr
	port  uint16
}

// connectSpec is one --connect item.
type connectSpec struct {
	spec  string // as given
	proto string // tcp, tcplong, udp, icmp, http, grpc, dns or kafka
	addr  netip.AddrPort
}

// Protocols of the specs.
var (
	listenProtos  = []string{"tcp", "udp", "http", "grpc", "dns", "kafka"}
	connectProtos = []string{"tcp", "tcplong", "udp", "http", "grpc", "dns", "kafka"} // and icmp
)

// parse checks the configuration and splits its specs.
func (c *Config) parse() (ls []listenSpec, cs []connectSpec, err error) {
	var errs []error
	for _, s := range splitList(c.Listen) {
		proto, rest, _ := strings.Cut(s, ":")
		l := listenSpec{spec: s, proto: proto}
		p, perr := strconv.ParseUint(rest, 10, 16)
		if perr != nil {
			ap, aerr := netip.ParseAddrPort(rest)
			p, perr, l.addr = uint64(ap.Port()), aerr, ap.Addr().Unmap()
		}
		if !slices.Contains(listenProtos, proto) || perr != nil || p == 0 {
			errs = append(errs, fmt.Errorf("--listen %q: want PROTO:PORT or PROTO:IP:PORT, PROTO one of %s", s, strings.Join(listenProtos, ", ")))
			continue
		}
		l.port = uint16(p)
		ls = append(ls, l)
	}
	dnsClients := false
	for _, s := range splitList(c.Connect) {
		proto, rest, _ := strings.Cut(s, ":")
		var ap netip.AddrPort
		var perr error
		switch {
		case proto == "icmp":
			var a netip.Addr
			a, perr = netip.ParseAddr(strings.Trim(rest, "[]"))
			ap = netip.AddrPortFrom(a.Unmap(), 0)
		case slices.Contains(connectProtos, proto):
			ap, perr = netip.ParseAddrPort(rest)
			if perr == nil && ap.Port() == 0 {
				perr = errors.New("port 0")
			}
			ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		default:
			perr = errors.New("unknown protocol")
		}
		if perr != nil {
			errs = append(errs, fmt.Errorf("--connect %q: %w; want icmp:IP or PROTO:IP:PORT, PROTO one of %s", s, perr, strings.Join(connectProtos, ", ")))
			continue
		}
		dnsClients = dnsClients || proto == "dns"
		cs = append(cs, connectSpec{spec: s, proto: proto, addr: ap})
	}
	if dnsClients && c.DNSNames == "" && c.DNSTable == "" {
		errs = append(errs, errors.New("dns: clients need --dns-names or --dns-table"))
	}
	if len(errs) == 0 && len(ls) == 0 && len(cs) == 0 {
		errs = append(errs, errors.New("nothing to do: give --listen and/or --connect"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--interval", c.Interval}, {"--timeout", c.Timeout}, {"--report-interval", c.ReportInterval}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", d.name))
		}
	}
	for _, n := range []struct {
		name     string
		v, limit int
	}{{"--request-size", c.RequestSize, 1 << 20}, {"--response-size", c.ResponseSize, 1 << 20},
		{"--udp-size", c.UDPSize, 1400}, {"--icmp-size", c.ICMPSize, 1400}} {
		if n.v < 0 || n.v > n.limit {
			errs = append(errs, fmt.Errorf("%s %d is not between 0 and %d", n.name, n.v, n.limit))
		}
	}
	return ls, cs, errors.Join(errs...)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// hostPort formats an address for net.Dial.
func hostPort(ap netip.AddrPort) string {
	return net.JoinHostPort(ap.Addr().String(), strconv.Itoa(int(ap.Port())))
}
