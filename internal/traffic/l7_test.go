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
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// freeDNSPort returns a port free for both TCP and UDP on loopback.
func freeDNSPort(t *testing.T) int {
	t.Helper()
	for range 20 {
		p := freePort(t, "tcp")
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			pc.Close()
			return p
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return 0
}

func writeHosts(t *testing.T) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "hosts")
	content := "# demo\n127.0.0.1 web.shop.svc.cluster.local web-0.web.shop.svc.cluster.local.\n" +
		"::1 web.shop.svc.cluster.local\n10.244.1.3 DB.shop.svc.cluster.local # upper case\n"
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestReadHosts(t *testing.T) {
	h, err := readHosts(writeHosts(t))
	if err != nil {
		t.Fatal(err)
	}
	want := hosts{
		"web.shop.svc.cluster.local.":       {netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")},
		"web-0.web.shop.svc.cluster.local.": {netip.MustParseAddr("127.0.0.1")},
		"db.shop.svc.cluster.local.":        {netip.MustParseAddr("10.244.1.3")},
	}
	if fmt.Sprint(h) != fmt.Sprint(want) {
		t.Errorf("hosts %v, want %v", h, want)
	}
	if got := h.names(); !slices.Equal(got, []string{"db.shop.svc.cluster.local.", "web-0.web.shop.svc.cluster.local.", "web.shop.svc.cluster.local."}) {
		t.Errorf("names %v", got)
	}
	for _, bad := range []string{"10.0.0.1\n", "web 10.0.0.1\n", "10.0.0.1 a..b\n"} {
		file := filepath.Join(t.TempDir(), "bad")
		if err := os.WriteFile(file, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := readHosts(file); err == nil || !strings.HasPrefix(err.Error(), file+":1: ") {
			t.Errorf("%q: err %v, want one naming line 1", bad, err)
		}
	}
}

// TestDNSAnswers asks the DNS server directly.
func TestDNSAnswers(t *testing.T) {
	h, err := readHosts(writeHosts(t))
	if err != nil {
		t.Fatal(err)
	}
	port := freeDNSPort(t)
	c := &counter{}
	job, closer, err := listenDNS(fmt.Sprintf("127.0.0.1:%d", port), h, c)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { job(context.Background()); close(done) }()
	defer func() { closer(); <-done }()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for _, tc := range []struct {
		net, name string
		qtype     uint16
		rcode     int
		answers   []string
	}{
		{"udp", "web.shop.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, []string{"127.0.0.1"}},
		{"tcp", "WEB.shop.svc.cluster.local.", dns.TypeAAAA, dns.RcodeSuccess, []string{"::1"}},
		{"udp", "db.shop.svc.cluster.local.", dns.TypeAAAA, dns.RcodeSuccess, nil}, // no IPv6: NODATA
		{"udp", dnsMissingName, dns.TypeA, dns.RcodeNameError, nil},
		{"tcp", dnsFailName, dns.TypeA, dns.RcodeServerFailure, nil},
	} {
		m := new(dns.Msg)
		m.SetQuestion(tc.name, tc.qtype)
		var r *dns.Msg
		// The server may not be serving yet.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			r, _, err = (&dns.Client{Net: tc.net, Timeout: time.Second}).Exchange(m, addr)
			if err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Fatalf("%s %s: %v", tc.net, tc.name, err)
		}
		var got []string
		for _, rr := range r.Answer {
			switch rr := rr.(type) {
			case *dns.A:
				got = append(got, rr.A.String())
			case *dns.AAAA:
				got = append(got, rr.AAAA.String())
			}
			if rr.Header().Ttl != dnsTTL || rr.Header().Name != tc.name {
				t.Errorf("%s: answer %v", tc.name, rr)
			}
		}
		if r.Rcode != tc.rcode || !slices.Equal(got, tc.answers) || !r.Authoritative {
			t.Errorf("%s %s %s: rcode %s answers %v aa %v, want %s %v", tc.net, dns.TypeToString[tc.qtype], tc.name,
				dns.RcodeToString[r.Rcode], got, r.Authoritative, dns.RcodeToString[tc.rcode], tc.answers)
		}
	}
	// The server counts an exchange after writing its answer, so the
	// last one may reach its stats a moment after the client has it.
	counted := func(s Stats) bool {
		return s.Results["udp A web.shop.svc.cluster.local. NOERROR"].Count > 0 && s.Results["tcp A fail.example. SERVFAIL"].Count == 1 &&
			s.Results["tcp AAAA web.shop.svc.cluster.local. NOERROR"].Count == 1 && s.Conns >= 2
	}
	s := c.snapshot()
	for deadline := time.Now().Add(5 * time.Second); !counted(s) && time.Now().Before(deadline); s = c.snapshot() {
		time.Sleep(10 * time.Millisecond)
	}
	if !counted(s) {
		t.Errorf("server stats %+v", s)
	}
}

// TestL7Loopback runs every L7 server and client on loopback and checks
// the totals in the stats file.
func TestL7Loopback(t *testing.T) {
	httpPort, grpcPort, dnsPort, kafkaPort := freePort(t, "tcp"), freePort(t, "tcp"), freeDNSPort(t), freePort(t, "tcp")
	stats := filepath.Join(t.TempDir(), "stats.json")
	httpC, grpcC := fmt.Sprintf("http:127.0.0.1:%d", httpPort), fmt.Sprintf("grpc:127.0.0.1:%d", grpcPort)
	dnsC, kafkaC := fmt.Sprintf("dns:127.0.0.1:%d", dnsPort), fmt.Sprintf("kafka:127.0.0.1:%d", kafkaPort)
	cfg := Config{Name: "test/l7",
		Listen:   fmt.Sprintf("http:%d,grpc:%d,dns:127.0.0.1:%d,kafka:127.0.0.1:%d", httpPort, grpcPort, dnsPort, kafkaPort),
		Connect:  strings.Join([]string{httpC, grpcC, dnsC, kafkaC}, ","),
		DNSTable: writeHosts(t), DNSNames: "web.shop.svc.cluster.local",
		Interval: 50 * time.Millisecond, Timeout: 2 * time.Second, StartDelay: 100 * time.Millisecond,
		ReportInterval: time.Hour, StatsFile: stats}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	if err := Run(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(stats)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	by := map[string]Stats{}
	for _, s := range rep.Stats {
		by[s.Role+" "+s.Spec] = s
	}
	count := func(s Stats, outcome string) uint64 { return s.Results[outcome].Count }
	check := func(key string, f func(Stats) bool) {
		t.Helper()
		if s, ok := by[key]; !ok || !f(s) {
			t.Errorf("%s: %+v", key, s)
		}
	}
	// Every result of a client has a round trip, but failures (a Kafka
	// client's long poll cut by its closing); no server's has.
	for _, s := range rep.Stats {
		for k, r := range s.Results {
			if r.Count == 0 || (s.Role == "client" && !strings.HasSuffix(k, " error")) != (r.MaxRoundTrip > 0) {
				t.Errorf("%s %s: result %q %+v", s.Role, s.Spec, k, r)
			}
		}
	}

	check("client "+httpC, func(s Stats) bool {
		orders, fail, missing := count(s, "GET /api/orders 200"), count(s, "POST /api/fail 500"), count(s, "GET /api/missing 404")
		return s.Sent > 20 && s.Conns == 1 && s.Errors == 0 && s.Recv == s.Sent && len(s.Results) == 3 &&
			orders+fail+missing == s.Sent && fail == s.Sent/5 && missing == s.Sent/7-s.Sent/35
	})
	check(fmt.Sprintf("server http:%d", httpPort), func(s Stats) bool {
		return s.Conns == 1 && fmt.Sprint(counts(s)) == fmt.Sprint(counts(by["client "+httpC]))
	})

	check("client "+grpcC, func(s Stats) bool {
		ok, notFound := count(s, "/grpc.health.v1.Health/Check OK"), count(s, "/grpc.health.v1.Health/Check NotFound")
		watch := count(s, "/grpc.health.v1.Health/Watch Canceled")
		return ok > 10 && notFound == ok && watch == ok && s.Conns == 1 && s.Errors == 0 && s.Sent == 3*ok
	})
	check(fmt.Sprintf("server grpc:%d", grpcPort), func(s Stats) bool {
		cl := by["client "+grpcC]
		ok, notFound := count(s, "/grpc.health.v1.Health/Check OK"), count(s, "/grpc.health.v1.Health/Check NotFound")
		// The last Watch's handler may still be ending when the server stops.
		watch := count(s, "/grpc.health.v1.Health/Watch Canceled")
		return s.Conns == 1 && ok == count(cl, "/grpc.health.v1.Health/Check OK") && notFound == ok &&
			watch+1 >= count(cl, "/grpc.health.v1.Health/Watch Canceled")
	})

	check("client "+dnsC, func(s Stats) bool {
		var udp, tcp uint64
		for k, r := range s.Results {
			if strings.HasPrefix(k, "tcp ") {
				tcp += r.Count
			} else {
				udp += r.Count
			}
		}
		return s.Sent > 40 && s.Recv == s.Sent && s.Errors == 0 && tcp == s.Sent/10 && udp+tcp == s.Sent && s.Conns == tcp &&
			count(s, "udp A web.shop.svc.cluster.local. NOERROR") > 0 && count(s, "udp AAAA web.shop.svc.cluster.local. NOERROR") > 0 &&
			count(s, "udp A nonexistent.cluster.local. NXDOMAIN") > 0 && count(s, "udp A fail.example. SERVFAIL") > 0
	})
	check(fmt.Sprintf("server dns:127.0.0.1:%d", dnsPort), func(s Stats) bool {
		return fmt.Sprint(counts(s)) == fmt.Sprint(counts(by["client "+dnsC])) && s.Conns == by["client "+dnsC].Conns
	})

	check("client "+kafkaC, func(s Stats) bool {
		return s.Sent > 10 && s.Recv > 0 && s.Recv <= s.Sent && s.Errors == 0 && s.Conns >= 2 &&
			count(s, "produce") >= 1 && count(s, "produce") <= s.Sent && count(s, "fetch") > 0 && count(s, "metadata") > 0
	})
	check(fmt.Sprintf("server kafka:127.0.0.1:%d", kafkaPort), func(s Stats) bool {
		cl := by["client "+kafkaC]
		return s.Conns == cl.Conns && count(s, "produce") == count(cl, "produce") && count(s, "metadata") == count(cl, "metadata") &&
			count(s, "joingroup") > 0
	})
}

// counts returns a Stats' results without their round trips.
func counts(s Stats) map[string]uint64 {
	out := map[string]uint64{}
	for k, r := range s.Results {
		out[k] = r.Count
	}
	return out
}
