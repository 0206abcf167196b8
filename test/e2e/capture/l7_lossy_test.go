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

package capture

import (
	"fmt"
	"maps"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/test/e2e/framework"
)

// The L7 records of HTTP/1.1 and gRPC over a lossy link. This kernel has
// no netem (CONFIG_NET_SCH_NETEM is not set), so the test impairs the
// link with a TC program of its own (impairment), attached last on the
// pods' host-side veths, in both hooks, after the agents' programs:
//
//   - it drops a share of the test's TCP segments: the agent of that veth
//     has sampled a segment the peer never gets; the sender's
//     retransmission is sampled again there, and at the other veth only
//     it is seen, often after later segments (reordered);
//   - it duplicates a share of them (bpf_clone_redirect to the same hook):
//     the agents after it sample the segment twice.
//
// A third run, of HTTP/1.1 to another port, has a share of its requests
// leave web-0's veth straight for api-0's (bpf_redirect_neigh, first in
// the ingress hook) so that the agent of web-0's veth never samples them:
// the only way bytes really go missing for an agent, as when its
// sampling limits or ring drop them. Each such exchange is one partial
// record there, of its response; every other record is whole.
//
// The stream layer must put every connection's bytes back in order, drop
// what it saw twice (flowscope_agent_l7_retransmits_total rises), and
// give each exchange the record it would have had on a clean link:
// counts per outcome equal the client's at both ends. A record may be
// partial only where bytes were really missing, that is, only at an
// agent whose gap counter rose (l7_gaps_total: bytes it never sampled,
// such as a segment its per-connection rate limit dropped); then its
// partial records hold nothing that contradicts the client, and every
// exchange still has one record.

// Impairment rates, in percent of the test's segments at each hook: high
// enough that a few seconds of traffic hit them many times, low enough
// that no call times out (a lost segment costs an RTO at worst).
const (
	lossPercent      = 3
	duplicatePercent = 5
	// impairedMark marks a duplicate, which passes the program again
	// unharmed.
	impairedMark = 0x4c374e45
)

// impairment returns a TC program that drops lossPercent and duplicates
// duplicatePercent of the IPv4 TCP segments from or to ports, and passes
// everything (TCX_NEXT) otherwise. ingress says which hook it is for: a
// duplicate goes back into the same one.
func impairment(ingress bool, ports ...uint16) *ebpf.ProgramSpec {
	var redirect int32 // BPF_F_INGRESS
	if ingress {
		redirect = 1
	}
	const (
		skbMark, skbIfindex = 8, 40
		tcxNext, tcActShot  = -1, 2
	)
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R0, asm.R6, skbMark, asm.Word),
		asm.JEq.Imm(asm.R0, impairedMark, "pass"),
	}
	insns = append(insns, loadTCPPorts()...)
	for _, p := range ports {
		insns = append(insns, asm.JEq.Imm(asm.R7, htons(p), "impair"), asm.JEq.Imm(asm.R8, htons(p), "impair"))
	}
	insns = append(insns,
		asm.Ja.Label("pass"),
		asm.FnGetPrandomU32.Call().WithSymbol("impair"),
		asm.Mod.Imm(asm.R0, 100),
		asm.JLT.Imm(asm.R0, lossPercent, "drop"),
		asm.JGE.Imm(asm.R0, lossPercent+duplicatePercent, "pass"),
		// A duplicate: the clone carries the mark; the original gets
		// its own back.
		asm.LoadMem(asm.R9, asm.R6, skbMark, asm.Word),
		asm.Mov.Imm(asm.R0, impairedMark),
		asm.StoreMem(asm.R6, skbMark, asm.R0, asm.Word),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMem(asm.R2, asm.R6, skbIfindex, asm.Word),
		asm.Mov.Imm(asm.R3, redirect),
		asm.FnCloneRedirect.Call(),
		asm.StoreMem(asm.R6, skbMark, asm.R9, asm.Word),
		asm.Ja.Label("pass"),
		asm.Mov.Imm(asm.R0, tcActShot).WithSymbol("drop"),
		asm.Return(),
		asm.Mov.Imm(asm.R0, tcxNext).WithSymbol("pass"),
		asm.Return(),
	)
	return &ebpf.ProgramSpec{Name: "fs_l7_impair", Type: ebpf.SchedCLS, License: "Apache-2.0", Instructions: insns}
}

// impair attaches the impairment of ports to both hooks of dev, last,
// until the test ends.
func impair(t *testing.T, dev string, ports ...uint16) {
	t.Helper()
	iface, err := net.InterfaceByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	for _, hook := range []struct {
		ingress bool
		attach  ebpf.AttachType
	}{{true, ebpf.AttachTCXIngress}, {false, ebpf.AttachTCXEgress}} {
		prog, err := ebpf.NewProgram(impairment(hook.ingress, ports...))
		if err != nil {
			t.Fatalf("loading the impairment program: %v", err)
		}
		t.Cleanup(func() { _ = prog.Close() })
		l, err := link.AttachTCX(link.TCXOptions{Interface: iface.Index, Program: prog, Attach: hook.attach, Anchor: link.Tail()})
		if err != nil {
			t.Fatalf("attaching the impairment program to %s: %v", dev, err)
		}
		t.Cleanup(func() { _ = l.Close() })
	}
}

// hidePercent of the hidden run's request segments bypass the agent of
// the client's veth.
const hidePercent = 10

// hiding returns a TC program for a host-side veth's ingress that sends
// hidePercent of the IPv4 TCP segments with payload to port straight out
// of the veth to (bpf_redirect_neigh), before the agent's program there
// runs: the segment reaches the server, but that agent never samples it,
// a real gap in what it sees. Everything else goes on (TCX_NEXT).
func hiding(port uint16, to int) *ebpf.ProgramSpec {
	const skbLen, tcxNext = 0, -1
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		// Longer than any bare ACK (Ethernet, IPv4 and TCP headers
		// with options): a segment with payload.
		asm.LoadMem(asm.R0, asm.R6, skbLen, asm.Word),
		asm.JLE.Imm(asm.R0, 14+60+60, "pass"),
	}
	insns = append(insns, loadTCPPorts()...)
	insns = append(insns,
		asm.JNE.Imm(asm.R8, htons(port), "pass"),
		asm.FnGetPrandomU32.Call(),
		asm.Mod.Imm(asm.R0, 100),
		asm.JGE.Imm(asm.R0, hidePercent, "pass"),
		asm.Mov.Imm(asm.R1, int32(to)),
		asm.Mov.Imm(asm.R2, 0),
		asm.Mov.Imm(asm.R3, 0),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnRedirectNeigh.Call(),
		asm.Return(),
		asm.Mov.Imm(asm.R0, tcxNext).WithSymbol("pass"),
		asm.Return(),
	)
	return &ebpf.ProgramSpec{Name: "fs_l7_hide", Type: ebpf.SchedCLS, License: "Apache-2.0", Instructions: insns}
}

// htons is v in network byte order, as an immediate to compare a loaded
// half word with.
func htons(v uint16) int32 { return int32(v>>8 | v<<8&0xff00) }

// loadTCPPorts loads the ports of the IPv4 TCP segment whose skb is in
// R6, in network byte order: the source's into R7, the destination's
// into R8. Any other packet, or one too short, jumps to "pass".
func loadTCPPorts() asm.Instructions {
	const skbProtocol = 16
	return asm.Instructions{
		asm.LoadMem(asm.R0, asm.R6, skbProtocol, asm.Word),
		asm.JNE.Imm(asm.R0, htons(0x0800), "pass"),
		// The IPv4 header: 20 bytes after the Ethernet header, to fp-24.
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, 14),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, -24),
		asm.Mov.Imm(asm.R4, 20),
		asm.FnSkbLoadBytes.Call(),
		asm.JNE.Imm(asm.R0, 0, "pass"),
		asm.LoadMem(asm.R0, asm.RFP, -24+9, asm.Byte), // protocol
		asm.JNE.Imm(asm.R0, 6, "pass"),
		// The TCP ports, after the IPv4 header's IHL words, to fp-32.
		asm.LoadMem(asm.R2, asm.RFP, -24, asm.Byte),
		asm.And.Imm(asm.R2, 0x0f),
		asm.LSh.Imm(asm.R2, 2),
		asm.Add.Imm(asm.R2, 14),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, -32),
		asm.Mov.Imm(asm.R4, 4),
		asm.FnSkbLoadBytes.Call(),
		asm.JNE.Imm(asm.R0, 0, "pass"),
		asm.LoadMem(asm.R7, asm.RFP, -32, asm.Half), // source port
		asm.LoadMem(asm.R8, asm.RFP, -30, asm.Half), // destination port
	}
}

// hide attaches hiding to dev's ingress, first, until the test ends.
func hide(t *testing.T, dev string, port uint16, to string) {
	t.Helper()
	from, err := net.InterfaceByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := net.InterfaceByName(to)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := ebpf.NewProgram(hiding(port, dst.Index))
	if err != nil {
		t.Fatalf("loading the hiding program: %v", err)
	}
	t.Cleanup(func() { _ = prog.Close() })
	l, err := link.AttachTCX(link.TCXOptions{Interface: from.Index, Program: prog, Attach: ebpf.AttachTCXIngress, Anchor: link.Head()})
	if err != nil {
		t.Fatalf("attaching the hiding program to %s: %v", dev, err)
	}
	t.Cleanup(func() { _ = l.Close() })
}

// hostVeth returns the host-side veth of a pod: the device the host
// routes the pod's address through.
func hostVeth(t *testing.T, netns string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", netns, "ip", "-o", "-4", "addr", "show", "dev", "eth0").Output()
	if err != nil {
		t.Fatalf("address of %s: %v", netns, err)
	}
	f := strings.Fields(string(out))
	i := slices.Index(f, "inet")
	if i < 0 || i+1 >= len(f) {
		t.Fatalf("no IPv4 address on %s's eth0: %s", netns, out)
	}
	addr, _, _ := strings.Cut(f[i+1], "/")
	out, err = exec.Command("ip", "-o", "route", "get", addr).Output()
	if err != nil {
		t.Fatalf("route to %s: %v", addr, err)
	}
	f = strings.Fields(string(out))
	if i = slices.Index(f, "dev"); i < 0 || i+1 >= len(f) {
		t.Fatalf("route to %s: %s", addr, out)
	}
	return f[i+1]
}

// streamCounters are an agent's stream-layer counters.
type streamCounters struct{ retransmits, reordered, gaps float64 }

func (s streamCounters) sub(o streamCounters) streamCounters {
	return streamCounters{s.retransmits - o.retransmits, s.reordered - o.reordered, s.gaps - o.gaps}
}

func readStreamCounters(t *testing.T, node int) streamCounters {
	return streamCounters{
		retransmits: sys.AgentMetric(t, node, "flowscope_agent_l7_retransmits_total"),
		reordered:   sys.AgentMetric(t, node, "flowscope_agent_l7_reordered_total"),
		gaps:        sys.AgentMetric(t, node, "flowscope_agent_l7_gaps_total"),
	}
}

func TestL7LossyLink(t *testing.T) {
	nodes := map[string]int{}
	for i, n := range sys.Nodes {
		nodes[n] = i
	}
	sides := []struct {
		ns, node string
		dir      v1alpha1.TrafficDirection
	}{{"shop", "node-a", "Egress"}, {"payments", "node-b", "Ingress"}}

	awaitL7Ready(t)
	trafficInPod(t, framework.DemoAPINetns, 0, "--listen=http:18091")
	trafficInPod(t, framework.DemoAPINetns, 0, "--listen=grpc:15091")
	trafficInPod(t, framework.DemoAPINetns, 0, "--listen=http:18092")
	time.Sleep(300 * time.Millisecond)
	var before [2]streamCounters
	for i, s := range sides {
		before[i] = readStreamCounters(t, nodes[s.node])
	}
	for _, netns := range []string{framework.DemoWebNetns, framework.DemoAPINetns} {
		impair(t, hostVeth(t, netns), 18091, 15091)
	}
	webVeth, apiVeth := hostVeth(t, framework.DemoWebNetns), hostVeth(t, framework.DemoAPINetns)
	hide(t, webVeth, 18092, apiVeth)

	// Long enough to hit every rule often; a lost SYN costs a second.
	// The hidden run's requests reach the server whole, but the agent of
	// web-0's veth misses some of them: a real gap there.
	runs := []struct {
		name, port string
		hidden     bool
		report     l7Report
	}{
		{"http", "18091", false, trafficInPod(t, framework.DemoWebNetns, 6*time.Second, "--connect=http:"+framework.DemoAPIIPv4+":18091", "--interval=20ms", "--timeout=5s")},
		{"grpc", "15091", false, trafficInPod(t, framework.DemoWebNetns, 6*time.Second, "--connect=grpc:"+framework.DemoAPIIPv4+":15091", "--interval=50ms", "--timeout=5s")},
		{"hidden http", "18092", true, trafficInPod(t, framework.DemoWebNetns, 4*time.Second, "--connect=http:"+framework.DemoAPIIPv4+":18092", "--interval=20ms", "--timeout=5s")},
	}

	var partial [2]int
	for _, r := range runs {
		c := mustClient(t, r.report)
		var exchanges uint64
		for k, res := range c.Results {
			if !strings.HasSuffix(k, " error") {
				exchanges += res.Count
			}
		}
		t.Logf("%s client: %d exchanges on %d connections: %v", r.name, exchanges, c.Conns, c.Results)
		// Enough to meet the impairments many times over; a loaded
		// machine made 39 gRPC exchanges where a quiet one makes 170.
		if exchanges < 30 {
			t.Fatalf("%s client made only %d exchanges", r.name, exchanges)
		}
		order := []int{0, 1}
		if r.hidden {
			order = []int{1, 0} // the server's side, whole, first
		}
		for _, i := range order {
			s := sides[i]
			var got []v1alpha1.Flow
			if r.hidden && i == 0 {
				// At web-0's veth, an exchange whose request was never
				// sampled is one partial record, its response's (the
				// response acknowledges the request's bytes, so the
				// stream layer knows them lost at once); the others are
				// whole, and never count more than the client did.
				var whole []v1alpha1.Flow
				framework.Eventually(t, 40*time.Second, fmt.Sprintf("the %s records of port %s in %s, one per exchange", r.name, r.port, s.ns), func() (bool, string) {
					got = slices.DeleteFunc(flows(t, "-n", s.ns, "--field-selector", "l4.destinationPort="+r.port),
						func(f v1alpha1.Flow) bool { return f.L7 == nil })
					whole = slices.DeleteFunc(slices.Clone(got), func(f v1alpha1.Flow) bool { return f.L7.Partial })
					return uint64(len(got)) == exchanges, fmt.Sprintf("%d records (%d partial) for %d exchanges", len(got), len(got)-len(whole), exchanges)
				})
				for k, n := range tally(whole) {
					if n > c.Results[k].Count {
						t.Errorf("%s at %s: %q: %d whole records, the client made %d", r.name, s.node, k, n, c.Results[k].Count)
					}
				}
				if len(whole) == len(got) {
					t.Errorf("%s at %s: no partial record, though %d%% of the requests went by unsampled", r.name, s.node, hidePercent)
				}
				t.Logf("%s at %s: %d records (%d partial) for %d exchanges", r.name, s.node, len(got), len(got)-len(whole), exchanges)
				checkEnds(t, got, s.ns, s.dir, s.node, v1alpha1.ProtocolTCP)
				checkLatencies(t, whole, c)
				for _, f := range got {
					if f.L7.Partial {
						partial[i]++
						checkPartialFits(t, f, c)
					}
				}
				continue
			}
			framework.Eventually(t, 40*time.Second, fmt.Sprintf("the %s records of port %s in %s to count the client's", r.name, r.port, s.ns), func() (bool, string) {
				got = slices.DeleteFunc(flows(t, "-n", s.ns, "--field-selector", "l4.destinationPort="+r.port),
					func(f v1alpha1.Flow) bool { return f.L7 == nil })
				whole := slices.DeleteFunc(slices.Clone(got), func(f v1alpha1.Flow) bool { return f.L7.Partial })
				if len(whole) == len(got) {
					ok, diff := matches(tally(got), c)
					return ok, fmt.Sprintf("%d records: %s", len(got), diff)
				}
				// Partial records stand for exchanges too: every
				// exchange has one record, and the whole ones never
				// count more of an outcome than the client did.
				var over []string
				for k, n := range tally(whole) {
					if n > c.Results[k].Count {
						over = append(over, fmt.Sprintf("%q: %d whole records, client %d", k, n, c.Results[k].Count))
					}
				}
				return uint64(len(got)) == exchanges && len(over) == 0,
					fmt.Sprintf("%d records (%d partial) for %d exchanges; %s", len(got), len(got)-len(whole), exchanges, strings.Join(over, "; "))
			})
			checkEnds(t, got, s.ns, s.dir, s.node, v1alpha1.ProtocolTCP)
			checkLatencies(t, slices.DeleteFunc(slices.Clone(got), func(f v1alpha1.Flow) bool { return f.L7.Partial }), c)
			for _, f := range got {
				if f.L7.Partial {
					partial[i]++
					checkPartialFits(t, f, c)
				}
			}
		}
	}

	for i, s := range sides {
		d := readStreamCounters(t, nodes[s.node]).sub(before[i])
		t.Logf("agent of %s: +%.0f retransmits, +%.0f reordered, +%.0f gaps; %d partial records", s.node, d.retransmits, d.reordered, d.gaps, partial[i])
		if d.retransmits == 0 {
			t.Errorf("agent of %s: no retransmit counted over a link that lost and duplicated segments", s.node)
		}
		if partial[i] > 0 && d.gaps == 0 {
			t.Errorf("agent of %s: %d partial records, but no gap: every byte was sampled", s.node, partial[i])
		}
		if s.node == "node-a" && d.gaps == 0 {
			t.Errorf("agent of %s: no gap counted, though %d%% of the hidden run's requests bypassed it", s.node, hidePercent)
		}
	}
}

// checkPartialFits verifies that a partial record holds nothing the
// client did not do: the fields it sets are those of one of the client's
// outcomes.
func checkPartialFits(t *testing.T, f v1alpha1.Flow, c l7Stat) {
	t.Helper()
	eq := func(got, want string) bool { return got == "" || got == want }
	for _, k := range slices.Sorted(maps.Keys(c.Results)) {
		if strings.HasSuffix(k, " error") {
			continue
		}
		// Outcomes read "GET /api/orders 200" and "/svc/Method Code".
		w := strings.Fields(k)
		switch l7 := f.L7; {
		case l7.HTTP != nil && len(w) == 3:
			if eq(l7.HTTP.Method, w[0]) && eq(l7.HTTP.URL, w[1]) && (l7.HTTP.Code == 0 || fmt.Sprint(l7.HTTP.Code) == w[2]) {
				return
			}
		case l7.GRPC != nil && len(w) == 2:
			svc, method, _ := strings.Cut(strings.TrimPrefix(w[0], "/"), "/")
			if eq(l7.GRPC.Service, svc) && eq(l7.GRPC.Method, method) {
				return
			}
		}
	}
	t.Errorf("partial flow %s (%s) fits none of the client's outcomes %v", f.Name, outcome(f), slices.Sorted(maps.Keys(c.Results)))
}
