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
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		listen, connect string
		ok              bool
	}{
		{"tcp:8080,udp:5353", "", true},
		{"", "tcp:10.244.1.2:8080,tcplong:[fd00:10:244:1::2]:8080,udp:10.244.2.2:9999,icmp:10.244.1.3,icmp:[fd00::1]", true},
		{"", "", false},
		{"tcp:0", "", false},
		{"sctp:1", "", false},
		{"", "tcp:10.244.1.2", false},
		{"", "tcp:host:80", false},
		{"", "udp:10.244.1.2:0", false},
		{"", "http:10.244.1.2", false},
		{"", "ftp:10.244.1.2:21", false},
		{"http:80,grpc:50051,dns:53,kafka:9092,kafka:10.244.2.5:9093,tcp:[::1]:8080", "", true},
		{"http:10.244.2.5", "", false},
		{"kafka:host:9092", "", false},
		{"", "http:10.244.1.2:80,grpc:[fd00:10:244:2::2]:50051,kafka:10.244.2.5:9092", true},
		{"", "dns:10.244.1.4:53", true}, // with --dns-names, below
	} {
		cfg := Config{Listen: tc.listen, Connect: tc.connect, Interval: time.Second, Timeout: time.Second,
			ReportInterval: time.Second, DNSNames: "web.shop.svc.cluster.local"}
		_, _, err := cfg.parse()
		if (err == nil) != tc.ok {
			t.Errorf("listen %q connect %q: err %v, want ok=%v", tc.listen, tc.connect, err, tc.ok)
		}
	}
}

func TestParseDNSNeedsNames(t *testing.T) {
	cfg := Config{Connect: "dns:10.244.1.4:53", Interval: time.Second, Timeout: time.Second, ReportInterval: time.Second}
	if _, _, err := cfg.parse(); err == nil || err.Error() != "dns: clients need --dns-names or --dns-table" {
		t.Errorf("err %v", err)
	}
}

func TestChecksum(t *testing.T) {
	// An echo request, id 1, seq 1, no data: 0x0800 + 0x0001 + 0x0001.
	msg := []byte{8, 0, 0, 0, 0, 1, 0, 1}
	if got, want := checksum(msg), ^uint16(0x0802); got != want {
		t.Fatalf("checksum %#x, want %#x", got, want)
	}
}

func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().(*net.UDPAddr).Port
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestLoopback serves and generates TCP and UDP on loopback and checks the
// totals in the stats file.
func TestLoopback(t *testing.T) {
	tcp, udp, closed := freePort(t, "tcp"), freePort(t, "udp"), freePort(t, "udp")
	stats := filepath.Join(t.TempDir(), "stats.json")
	cfg := Config{Name: "test",
		Listen:   fmt.Sprintf("tcp:%d,udp:%d", tcp, udp),
		Connect:  fmt.Sprintf("tcp:127.0.0.1:%d,tcplong:127.0.0.1:%d,udp:127.0.0.1:%d,udp:127.0.0.1:%d", tcp, tcp, udp, closed),
		Interval: 50 * time.Millisecond, Timeout: time.Second, ReportInterval: time.Hour, StatsFile: stats,
		RequestSize: 100, ResponseSize: 1000, UDPSize: 64}
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
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
	check := func(key string, f func(Stats) bool) {
		t.Helper()
		if s, ok := by[key]; !ok || !f(s) {
			t.Errorf("%s: %+v", key, s)
		}
	}
	check(fmt.Sprintf("client tcp:127.0.0.1:%d", tcp), func(s Stats) bool {
		return s.Sent > 3 && s.Conns == s.Sent && s.Recv == s.Sent && s.SentBytes == 100*s.Sent && s.Errors == 0
	})
	check(fmt.Sprintf("client tcplong:127.0.0.1:%d", tcp), func(s Stats) bool {
		return s.Sent > 3 && s.Conns == 1 && s.Recv == s.Sent && s.RecvBytes > 1000*s.Recv
	})
	check(fmt.Sprintf("client udp:127.0.0.1:%d", udp), func(s Stats) bool {
		return s.Sent > 3 && s.Recv == s.Sent && s.SentIPBytes == (64+28)*s.Sent
	})
	check(fmt.Sprintf("client udp:127.0.0.1:%d", closed), func(s Stats) bool {
		return s.Sent > 3 && s.Recv == 0 && s.Refused == s.Sent
	})
	check(fmt.Sprintf("server tcp:%d", tcp), func(s Stats) bool {
		return s.Recv == by[fmt.Sprintf("client tcp:127.0.0.1:%d", tcp)].Sent+by[fmt.Sprintf("client tcplong:127.0.0.1:%d", tcp)].Sent
	})
}
