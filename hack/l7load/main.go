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

// Command l7load is the load of make bench-l7: a net/http server and a
// grpc-go server (h2c, the standard health service), and a client that
// sends HTTP/1.1 GETs or gRPC unary calls as fast as the server answers
// over a few keep-alive connections, one call at a time on each, and
// reports the request rate and latency percentiles. hack/bench-l7.sh runs
// each in its own network namespace.
//
//	l7load serve -listen 10.250.0.2:8080 -grpc-listen 10.250.0.2:9090
//	l7load load -url http://10.250.0.2:8080/api/orders -conns 4 -duration 10s
//	l7load load -grpc 10.250.0.2:9090 -conns 4 -duration 10s
//
// load prints one line: "<requests> <requests/s> <p50 µs> <p99 µs>".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: l7load serve|load [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "load":
		err = load(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "l7load:", err)
		os.Exit(1)
	}
}

// body is what the server answers: small, as the API calls between
// services that L7 records are about.
var body = []byte(`{"id":42,"status":"shipped"}`)

// kafkaTopic is the topic the Kafka load produces to.
const kafkaTopic = "bench"

// answerDNS answers every A question with one address.
func answerDNS(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg).SetReply(q)
	for _, qq := range q.Question {
		if qq.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30},
				A: net.IPv4(10, 96, 0, 42)})
		}
	}
	_ = w.WriteMsg(m)
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "address to serve HTTP/1.1 on")
	grpcListen := fs.String("grpc-listen", "", "address to serve gRPC (h2c) on, if any")
	dnsListen := fs.String("dns-listen", "", "address to serve DNS over UDP on, if any: every A query is answered")
	kafkaListen := fs.String("kafka-listen", "", "address to run a one-broker Kafka cluster (kfake) on, if any, with the topic "+kafkaTopic)
	_ = fs.Parse(args)
	if *dnsListen != "" {
		srv := &dns.Server{Addr: *dnsListen, Net: "udp", Handler: dns.HandlerFunc(answerDNS)}
		go func() {
			if err := srv.ListenAndServe(); err != nil {
				fmt.Fprintln(os.Stderr, "l7load: dns:", err)
				os.Exit(1)
			}
		}()
	}
	if *kafkaListen != "" {
		// A broker names itself in Metadata by the address it listens
		// on: one address, the flag's.
		_, port, err := net.SplitHostPort(*kafkaListen)
		if err != nil {
			return err
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return err
		}
		if _, err := kfake.NewCluster(kfake.Ports(p), kfake.SeedTopics(1, kafkaTopic),
			kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, *kafkaListen) })); err != nil {
			return err
		}
	}
	if *grpcListen != "" {
		ln, err := net.Listen("tcp", *grpcListen)
		if err != nil {
			return err
		}
		gs := grpc.NewServer()
		healthpb.RegisterHealthServer(gs, health.NewServer()) // answers SERVING
		go func() {
			if err := gs.Serve(ln); err != nil {
				fmt.Fprintln(os.Stderr, "l7load: grpc:", err)
				os.Exit(1)
			}
		}()
	}
	srv := &http.Server{
		Addr: *listen,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(body)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	return srv.ListenAndServe()
}

func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	url := fs.String("url", "http://127.0.0.1:8080/api/orders", "URL to GET")
	target := fs.String("grpc", "", "host:port to call grpc.health.v1.Health/Check on instead of GETting -url")
	dnsServer := fs.String("dns", "", "host:port to ask A questions of over UDP instead of GETting -url")
	kafkaBroker := fs.String("kafka", "", "host:port of a Kafka broker to produce records to (topic "+kafkaTopic+", acks all) instead of GETting -url")
	conns := fs.Int("conns", 4, "keep-alive connections, one client goroutine each")
	duration := fs.Duration("duration", 10*time.Second, "how long to send")
	_ = fs.Parse(args)

	// call is one request on connection i.
	var call func(ctx context.Context, i int) error
	switch {
	case *dnsServer != "":
		// A socket each, kept: a client's queries from one port, as a
		// resolver's stub sends them.
		c := &dns.Client{Net: "udp", Timeout: 10 * time.Second}
		socks := make([]*dns.Conn, *conns)
		for i := range socks {
			co, err := c.Dial(*dnsServer)
			if err != nil {
				return err
			}
			defer co.Close()
			socks[i] = co
		}
		q := new(dns.Msg).SetQuestion("orders.shop.svc.cluster.local.", dns.TypeA)
		call = func(ctx context.Context, i int) error {
			m := q.Copy()
			m.Id = dns.Id()
			r, _, err := c.ExchangeWithConnContext(ctx, m, socks[i])
			if err != nil {
				return err
			}
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
				return fmt.Errorf("rcode %s, %d answers", dns.RcodeToString[r.Rcode], len(r.Answer))
			}
			return nil
		}
	case *kafkaBroker != "":
		// A client each: its own connection, one record at a time.
		clients := make([]*kgo.Client, *conns)
		for i := range clients {
			cl, err := kgo.NewClient(kgo.SeedBrokers(*kafkaBroker), kgo.DefaultProduceTopic(kafkaTopic),
				kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0))
			if err != nil {
				return err
			}
			defer cl.Close()
			clients[i] = cl
		}
		value := make([]byte, 100)
		call = func(ctx context.Context, i int) error {
			return clients[i].ProduceSync(ctx, &kgo.Record{Value: value}).FirstErr()
		}
	case *target != "":
		// A connection each: grpc-go would otherwise multiplex every
		// goroutine's calls onto one.
		clients := make([]healthpb.HealthClient, *conns)
		for i := range clients {
			cc, err := grpc.NewClient(*target, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return err
			}
			defer cc.Close()
			clients[i] = healthpb.NewHealthClient(cc)
		}
		call = func(ctx context.Context, i int) error {
			resp, err := clients[i].Check(ctx, &healthpb.HealthCheckRequest{})
			if err != nil {
				return err
			}
			if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				return fmt.Errorf("status %v", resp.GetStatus())
			}
			return nil
		}
	default:
		tr := &http.Transport{MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns, DisableCompression: true}
		client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		call = func(ctx context.Context, _ int) error { return get(ctx, client, *url) }
	}
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	deadline, _ := ctx.Deadline()

	var (
		mu   sync.Mutex
		all  []time.Duration
		errs int
		last error
		wg   sync.WaitGroup
	)
	start := time.Now()
	for i := range *conns {
		wg.Go(func() {
			var lat []time.Duration
			var lastErr error
			bad := 0
			for ctx.Err() == nil {
				t0 := time.Now()
				if err := call(ctx, i); err != nil {
					// The run's end: grpc-go may report its deadline
					// before the context's timer closes Done, and a
					// socket given the deadline (DNS) its timeout.
					end := errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded ||
						!time.Now().Before(deadline)
					if !end && ctx.Err() == nil {
						bad, lastErr = bad+1, err
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all, errs = append(all, lat...), errs+bad
			if lastErr != nil {
				last = lastErr
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if errs > 0 {
		return fmt.Errorf("%d requests failed, the last with: %w", errs, last)
	}
	if len(all) == 0 {
		return errors.New("no request completed")
	}
	slices.Sort(all)
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) }
	fmt.Printf("%d %.0f %.0f %.0f\n", len(all), float64(len(all))/elapsed.Seconds(), pct(0.50), pct(0.99))
	return nil
}

func get(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
