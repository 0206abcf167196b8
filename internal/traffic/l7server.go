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

package traffic

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// Names of the demo protocols' fixed answers.
const (
	// kafkaTopic is the topic the Kafka servers hold and the clients
	// produce to and consume.
	kafkaTopic = "orders"
	// dnsFailName is answered with SERVFAIL.
	dnsFailName = "fail.example."
	// dnsMissingName is a name DNS clients ask for that no table holds.
	dnsMissingName = "nonexistent.cluster.local."
	// dnsTTL is the TTL of the DNS servers' answers, in seconds.
	dnsTTL = 30
)

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	c *counter
}

func (l countingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err == nil {
		l.c.add(func(s *Stats) { s.Conns++ })
	}
	return conn, err
}

// listenCounted listens on addr and counts the accepted connections.
func listenCounted(addr string, c *counter) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return countingListener{ln, c}, nil
}

// ---------------------------------------------------------------------------
// HTTP/1.1

// ordersJSON is the body of GET /api/orders.
var ordersJSON = []byte(`{"orders":[{"id":1,"item":"book","qty":2},{"id":2,"item":"lamp","qty":1},{"id":3,"item":"pen","qty":12}]}` + "\n")

// listenHTTP serves the demo API over HTTP/1.1 (net/http without TLS does
// not speak HTTP/2).
func listenHTTP(addr string, c *counter) (job func(context.Context), closer func(), err error) {
	ln, err := listenCounted(addr, c)
	if err != nil {
		return nil, nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/orders", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(ordersJSON)
	})
	mux.HandleFunc("POST /api/fail", func(w http.ResponseWriter, _ *http.Request) {
		jsonError(w, http.StatusInternalServerError, "the order could not be placed")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		jsonError(w, http.StatusNotFound, "no such resource")
	})
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.Copy(io.Discard, r.Body)
			rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
			mux.ServeHTTP(rec, r)
			c.add(func(s *Stats) {
				s.Recv++
				s.RecvBytes += uint64(body)
				s.Sent++
				s.SentBytes += uint64(rec.bytes)
			})
			c.result(fmt.Sprintf("%s %s %d", r.Method, r.URL.Path, rec.code), 0)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       serverIdleTimeout,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	job = func(context.Context) {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			c.fail(err)
		}
	}
	return job, func() { srv.Close() }, nil
}

func jsonError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, "{\"error\":%q}\n", msg)
}

// statusRecorder remembers a response's status code and body size.
type statusRecorder struct {
	http.ResponseWriter
	code  int
	bytes int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	n, err := r.ResponseWriter.Write(b)
	r.bytes += n
	return n, err
}

// ---------------------------------------------------------------------------
// gRPC

// listenGRPC serves the standard health service over cleartext HTTP/2:
// "" is SERVING, any other service NotFound (Check) or SERVICE_UNKNOWN
// (Watch).
func listenGRPC(addr string, c *counter) (job func(context.Context), closer func(), err error) {
	ln, err := listenCounted(addr, c)
	if err != nil {
		return nil, nil, err
	}
	count := func(method string, err error) {
		c.add(func(s *Stats) { s.Recv++; s.Sent++ })
		c.result(method+" "+status.Code(err).String(), 0)
	}
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			resp, err := handler(ctx, req)
			count(info.FullMethod, err)
			return resp, err
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			err := handler(srv, ss)
			count(info.FullMethod, err)
			return err
		}),
	)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	job = func(context.Context) {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			c.fail(err)
		}
	}
	// Stop, not GracefulStop: Watch streams never end on their own.
	return job, srv.Stop, nil
}

// ---------------------------------------------------------------------------
// DNS

// hosts maps lower-case fully qualified names to their addresses.
type hosts map[string][]netip.Addr

// readHosts reads a hosts file: "IP NAME..." lines, # comments. Names
// are made fully qualified (a trailing dot) and lower case. No file, no
// names.
func readHosts(file string) (hosts, error) {
	if file == "" {
		return nil, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	h := hosts{}
	for i, line := range strings.Split(string(data), "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		a, err := netip.ParseAddr(f[0])
		if err != nil || len(f) < 2 {
			return nil, fmt.Errorf("%s:%d: want an address and names", file, i+1)
		}
		for _, n := range f[1:] {
			n = dns.Fqdn(strings.ToLower(n))
			if _, ok := dns.IsDomainName(n); !ok {
				return nil, fmt.Errorf("%s:%d: %q is not a domain name", file, i+1, n)
			}
			if !slices.Contains(h[n], a.Unmap()) {
				h[n] = append(h[n], a.Unmap())
			}
		}
	}
	return h, nil
}

// names returns the table's names, sorted.
func (h hosts) names() []string {
	out := make([]string, 0, len(h))
	for n := range h {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// dnsHandler answers from a hosts table, authoritatively: A and AAAA of
// its names (an empty answer for a name without an address of the type
// asked), SERVFAIL for dnsFailName, NXDOMAIN for any other name.
type dnsHandler struct {
	hosts hosts
	c     *counter
}

func (d *dnsHandler) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	transport := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		transport = "tcp"
	}
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	outcome := transport + " FORMERR"
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
	} else {
		q := r.Question[0]
		name := strings.ToLower(q.Name)
		addrs, known := d.hosts[name]
		switch {
		case name == dnsFailName:
			m.Rcode = dns.RcodeServerFailure
		case !known:
			m.Rcode = dns.RcodeNameError
		}
		for _, a := range addrs {
			hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: dnsTTL}
			switch {
			case q.Qtype == dns.TypeA && a.Is4():
				hdr.Rrtype = dns.TypeA
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
			case q.Qtype == dns.TypeAAAA && a.Is6():
				hdr.Rrtype = dns.TypeAAAA
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
			}
		}
		outcome = fmt.Sprintf("%s %s %s %s", transport, dns.TypeToString[q.Qtype], name, dns.RcodeToString[m.Rcode])
	}
	d.c.add(func(s *Stats) { s.Recv++; s.RecvBytes += uint64(r.Len()) })
	packed, err := m.Pack()
	if err == nil {
		_, err = w.Write(packed)
	}
	if err != nil {
		d.c.fail(err)
		return
	}
	d.c.add(func(s *Stats) { s.Sent++; s.SentBytes += uint64(len(packed)) })
	d.c.result(outcome, 0)
}

// listenDNS serves the hosts table over UDP and TCP on one port.
func listenDNS(addr string, h hosts, c *counter) (job func(context.Context), closer func(), err error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, nil, err
	}
	ln, err := listenCounted(addr, c)
	if err != nil {
		pc.Close()
		return nil, nil, err
	}
	handler := &dnsHandler{hosts: h, c: c}
	udp := &dns.Server{PacketConn: pc, Handler: handler}
	tcp := &dns.Server{Listener: ln, Handler: handler, IdleTimeout: func() time.Duration { return 10 * time.Second }}
	job = func(context.Context) {
		var wg sync.WaitGroup
		for _, srv := range []*dns.Server{udp, tcp} {
			wg.Go(func() {
				if err := srv.ActivateAndServe(); err != nil && !errors.Is(err, net.ErrClosed) {
					c.fail(err)
				}
			})
		}
		wg.Wait()
	}
	closer = func() {
		// Shutdown fails when the server has not started (an error
		// elsewhere before the jobs ran): the sockets are closed anyway.
		_ = udp.Shutdown()
		_ = tcp.Shutdown()
		pc.Close()
		ln.Close()
	}
	return job, closer, nil
}

// ---------------------------------------------------------------------------
// Kafka

// listenKafka runs a one-broker Kafka cluster (kfake, in memory) with the
// topic kafkaTopic. A broker tells its clients where to find it (in
// Metadata answers) by the address it listens on, so it listens on one
// address: the spec's, or the namespace's first global IPv4 address (the
// pod's).
func listenKafka(l listenSpec, c *counter) (job func(context.Context), closer func(), err error) {
	addr := l.addr
	if !addr.IsValid() {
		if addr, err = podAddress(); err != nil {
			return nil, nil, err
		}
	}
	at := hostPort(netip.AddrPortFrom(addr, l.port))
	cluster, err := kfake.NewCluster(
		kfake.Ports(int(l.port)),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return listenCounted(at, c) }),
		kfake.ClusterID("flowscope-traffic"),
		kfake.SeedTopics(3, kafkaTopic),
		// Records leave after an hour (ApplyRetention below), so that a
		// long make run does not grow without bound.
		kfake.BrokerConfigs(map[string]string{"log.retention.ms": "3600000"}),
	)
	if err != nil {
		return nil, nil, err
	}
	// Observes every request; not handling any, it stays.
	cluster.Control(func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.add(func(s *Stats) { s.Recv++ })
		c.result(strings.ToLower(kmsg.NameForKey(req.Key())), 0)
		return nil, nil, false
	})
	done := make(chan struct{})
	var once sync.Once
	job = func(context.Context) {
		tick := time.NewTicker(time.Minute)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				cluster.ApplyRetention()
			}
		}
	}
	closer = func() {
		once.Do(func() {
			close(done)
			cluster.Close()
		})
	}
	return job, closer, nil
}

// podAddress returns the first global unicast IPv4 address of the
// network namespace's interfaces.
func podAddress() (netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Addr{}, err
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() && ip.IsGlobalUnicast() {
			return ip.Unmap(), nil
		}
	}
	return netip.Addr{}, errors.New("no global IPv4 address to advertise: give kafka:IP:PORT")
}
