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
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

const (
	// userAgent is what the HTTP and gRPC clients call themselves, and the
	// Kafka clients' client.id.
	userAgent = "flowscope-traffic"

	// grpcConnLifetime is how long a gRPC client keeps its connection. An
	// observer that joins a connection late (an agent restarted, a gate
	// opened after the handshake) cannot read its HTTP/2 headers: HPACK
	// sends a header the connection has sent before as an index into a
	// table built from the earlier headers. A new connection every minute
	// keeps what such an observer misses short.
	grpcConnLifetime = time.Minute

	// kafkaMetadataMaxAge is how often the Kafka clients refresh their
	// metadata (kgo's default is 5 minutes), so that Metadata exchanges
	// show up soon in a flow log started after the clients.
	kafkaMetadataMaxAge = 30 * time.Second
)

// ---------------------------------------------------------------------------
// HTTP/1.1

// httpClient asks the demo API on one keep-alive connection (redialed
// when it breaks): GET /api/orders, every 5th request POST /api/fail
// (500), every 7th GET /api/missing (404).
type httpClient struct {
	base   string // http://IP:PORT
	tr     *http.Transport
	client *http.Client
	c      *counter
	seq    uint64
}

func newHTTPClient(ap netip.AddrPort, cfg *Config, c *counter) *httpClient {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: cfg.Timeout}).DialContext,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     serverIdleTimeout,
		DisableCompression:  true,
	}
	return &httpClient{base: "http://" + hostPort(ap), tr: tr, client: &http.Client{Transport: tr, Timeout: cfg.Timeout}, c: c}
}

func (h *httpClient) once() {
	h.seq++
	method, path, body := http.MethodGet, "/api/orders", []byte(nil)
	switch {
	case h.seq%5 == 0:
		method, path = http.MethodPost, "/api/fail"
		body = fmt.Appendf(nil, `{"item":"book","qty":%d}`, h.seq)
	case h.seq%7 == 0:
		path = "/api/missing"
	}
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		if !i.Reused {
			h.c.add(func(s *Stats) { s.Conns++ })
		}
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), method, h.base+path, bytes.NewReader(body))
	if err != nil {
		h.c.fail(err)
		return
	}
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-Request-Id", strconv.FormatUint(h.seq, 10))
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := h.client.Do(req)
	if err != nil {
		h.c.fail(err)
		return
	}
	// Read to the end, so that the connection is reused.
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	rtt := time.Since(start)
	if err != nil {
		h.c.fail(err)
		return
	}
	h.c.add(func(s *Stats) {
		s.Sent++
		s.SentBytes += uint64(len(body))
		s.Recv++
		s.RecvBytes += uint64(n)
	})
	h.c.result(fmt.Sprintf("%s %s %d", method, path, resp.StatusCode), rtt)
}

func (h *httpClient) close() { h.tr.CloseIdleConnections() }

// ---------------------------------------------------------------------------
// gRPC

// grpcClient calls the health service every interval: Check(""),
// Check("missing") (NotFound), and Watch("") read for one message, then
// cancelled (so the call ends Canceled). All on one connection, replaced
// every grpcConnLifetime. Only the job's goroutine uses it.
type grpcClient struct {
	target string
	cfg    *Config
	c      *counter

	conn *grpc.ClientConn
	born time.Time
}

func (g *grpcClient) once() {
	if g.conn != nil && time.Since(g.born) >= grpcConnLifetime {
		g.close()
	}
	if g.conn == nil {
		conn, err := grpc.NewClient(g.target, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithUserAgent(userAgent))
		if err != nil {
			g.c.fail(err)
			return
		}
		g.conn, g.born = conn, time.Now()
		g.c.add(func(s *Stats) { s.Conns++ })
	}
	hc := healthpb.NewHealthClient(g.conn)
	for _, svc := range []string{"", "missing"} {
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.Timeout)
		start := time.Now()
		_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		rtt := time.Since(start)
		cancel()
		if code := status.Code(err); code != codes.OK && code != codes.NotFound {
			g.c.fail(err)
			continue
		}
		g.c.add(func(s *Stats) { s.Sent++; s.Recv++ })
		g.c.result(healthpb.Health_Check_FullMethodName+" "+status.Code(err).String(), rtt)
	}

	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.Timeout)
	start := time.Now()
	stream, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	rtt := time.Since(start)
	cancel()
	if err != nil {
		g.c.fail(err)
		return
	}
	g.c.add(func(s *Stats) { s.Sent++; s.Recv++ })
	g.c.result(healthpb.Health_Watch_FullMethodName+" "+codes.Canceled.String(), rtt)
}

func (g *grpcClient) close() {
	if g.conn != nil {
		g.conn.Close()
		g.conn = nil
	}
}

// ---------------------------------------------------------------------------
// DNS

// dnsClient asks, every interval, for A and AAAA of a name (one of its
// names after the other), for A of dnsMissingName (NXDOMAIN) and of
// dnsFailName (SERVFAIL): over UDP from one socket, and every 10th query
// over TCP, on a connection of its own. Only the job's goroutine uses it.
type dnsClient struct {
	addr  string
	names []string
	cfg   *Config
	c     *counter
	round uint64
	seq   uint64
	udp   *dns.Conn
}

func newDNSClient(ap netip.AddrPort, cfg *Config, c *counter) (*dnsClient, error) {
	var names []string
	for _, n := range splitList(cfg.DNSNames) {
		n = dns.Fqdn(strings.ToLower(n))
		if _, ok := dns.IsDomainName(n); !ok {
			return nil, fmt.Errorf("--dns-names: %q is not a domain name", n)
		}
		names = append(names, n)
	}
	if len(names) == 0 {
		names = cfg.hosts.names()
	}
	if len(names) == 0 {
		return nil, errors.New("no names to ask for: --dns-names is empty and --dns-table has none")
	}
	return &dnsClient{addr: hostPort(ap), names: names, cfg: cfg, c: c}, nil
}

func (d *dnsClient) once() {
	name := d.names[d.round%uint64(len(d.names))]
	d.round++
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{name, dns.TypeA}, {name, dns.TypeAAAA}, {dnsMissingName, dns.TypeA}, {dnsFailName, dns.TypeA}} {
		d.seq++
		d.ask(q.name, q.qtype, d.seq%10 == 0)
	}
}

func (d *dnsClient) ask(name string, qtype uint16, overTCP bool) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	transport := "udp"
	cl := &dns.Client{Net: transport, Timeout: d.cfg.Timeout}
	start := time.Now()
	var r *dns.Msg
	var err error
	if overTCP {
		transport, cl.Net = "tcp", "tcp"
		var conn *dns.Conn
		if conn, err = cl.Dial(d.addr); err == nil {
			d.c.add(func(s *Stats) { s.Conns++ })
			r, _, err = cl.ExchangeWithConn(m, conn)
			conn.Close()
		}
	} else {
		if d.udp == nil {
			d.udp, err = cl.Dial(d.addr)
		}
		if err == nil {
			// A late answer to an earlier query is skipped by its ID.
			r, _, err = cl.ExchangeWithConn(m, d.udp)
			if err != nil && !isTimeout(err) {
				d.udp.Close()
				d.udp = nil
			}
		}
	}
	rtt := time.Since(start)
	if err != nil {
		d.c.fail(err)
		return
	}
	d.c.add(func(s *Stats) {
		s.Sent++
		s.SentBytes += uint64(m.Len())
		s.Recv++
		s.RecvBytes += uint64(r.Len())
	})
	d.c.result(fmt.Sprintf("%s %s %s %s", transport, dns.TypeToString[qtype], name, dns.RcodeToString[r.Rcode]), rtt)
}

func (d *dnsClient) close() {
	if d.udp != nil {
		d.udp.Close()
		d.udp = nil
	}
}

// ---------------------------------------------------------------------------
// Kafka

// kafkaClient produces a record to kafkaTopic every interval and consumes
// the topic in a consumer group of its own (every client sees every
// record), with one kgo client. Its hook counts the requests by API key,
// with their round trips.
type kafkaClient struct {
	cl  *kgo.Client
	cfg *Config
	c   *counter
	seq uint64
}

func newKafkaClient(ap netip.AddrPort, cfg *Config, c *counter) (*kafkaClient, error) {
	name := cfg.Name
	if name == "" {
		name, _ = os.Hostname()
	}
	group := "orders-" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			return r
		}
		return '-'
	}, name)
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(hostPort(ap)),
		kgo.ClientID(userAgent),
		kgo.DialTimeout(cfg.Timeout),
		kgo.MetadataMaxAge(kafkaMetadataMaxAge),
		kgo.DefaultProduceTopic(kafkaTopic),
		kgo.ProducerLinger(0),
		kgo.ConsumeTopics(kafkaTopic),
		kgo.ConsumerGroup(group),
		kgo.WithHooks(kafkaHook{c}),
	)
	if err != nil {
		return nil, err
	}
	return &kafkaClient{cl: cl, cfg: cfg, c: c}, nil
}

// run consumes while produce runs, then closes the client (which leaves
// the group).
func (k *kafkaClient) run(ctx context.Context, produce func(context.Context)) {
	consuming, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { k.consume(consuming) })
	produce(ctx)
	stop()
	wg.Wait()
	k.cl.Close()
}

func (k *kafkaClient) consume(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(k.cfg.StartDelay):
	}
	for {
		fetches := k.cl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return
		}
		fetches.EachError(func(_ string, _ int32, err error) { k.c.fail(err) })
		var n, size uint64
		fetches.EachRecord(func(r *kgo.Record) { n, size = n+1, size+uint64(len(r.Value)) })
		k.c.add(func(s *Stats) { s.Recv += n; s.RecvBytes += size })
	}
}

func (k *kafkaClient) once() {
	k.seq++
	value := fmt.Appendf(nil, `{"order":%d,"item":"book","qty":1}`, k.seq)
	ctx, cancel := context.WithTimeout(context.Background(), k.cfg.Timeout)
	defer cancel()
	rec := &kgo.Record{Key: []byte(strconv.FormatUint(k.seq, 10)), Value: value}
	if err := k.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		k.c.fail(err)
		return
	}
	k.c.add(func(s *Stats) { s.Sent++; s.SentBytes += uint64(len(value)) })
}

// kafkaHook counts a kgo client's connections, and its requests by API
// key ("produce", "fetch", "metadata", ...: kmsg's names in lower case)
// with the longest round trip of each; failed ones as "<key> error".
type kafkaHook struct{ c *counter }

var (
	_ kgo.HookBrokerConnect = kafkaHook{}
	_ kgo.HookBrokerE2E     = kafkaHook{}
)

func (h kafkaHook) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err == nil {
		h.c.add(func(s *Stats) { s.Conns++ })
	}
}

func (h kafkaHook) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	name := strings.ToLower(kmsg.NameForKey(key))
	if e2e.WriteErr != nil || e2e.ReadErr != nil {
		h.c.result(name+" error", 0)
		return
	}
	h.c.result(name, e2e.DurationE2E())
}
