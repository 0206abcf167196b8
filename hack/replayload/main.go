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

// Command replayload measures the Hubble import end to end, through a real
// flowscope-agent process: it starts the agent on a replay file of its own
// (capture off, no Kubernetes API), appends -lines diverse Hubble export
// lines (internal/flowgen: TCP at both ends, DNS and HTTP records, drops,
// world ends) at once, and times how long the agent takes until it has
// stored them all: its flowscope_agent_flows_ingested_total, read from its
// /metrics every 100ms, is the count of flows committed to the store, where
// a list finds them. Then it lists them through the agent's gRPC API, as
// flowscope-apiserver does (mutual TLS, certificates made here), and checks
// that every one is there.
//
// Given several binaries (-agent label=path, repeated), it runs them
// alternately, round after round, so that a busy machine's load falls on
// each alike, and prints every round's lines/s and the agent's CPU per
// line, then each binary's median and spread (min-max):
//
//	go run ./hack/replayload -agent before=/tmp/agent-old -agent after=_output/bin/flowscope-agent -rounds 5
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/internal/diskusage"
	"flowscope.io/flowscope/internal/flowgen"
	"flowscope.io/flowscope/internal/rusage"
	"flowscope.io/flowscope/internal/tlsutil"
)

const node = "node-a"

type agentFlag []binary

type binary struct{ label, path string }

func (a *agentFlag) String() string { return fmt.Sprint(*a) }
func (a *agentFlag) Set(s string) error {
	label, path, ok := strings.Cut(s, "=")
	if !ok {
		label, path = filepath.Base(s), s
	}
	*a = append(*a, binary{label, path})
	return nil
}

type options struct {
	agents  agentFlag
	lines   int
	rounds  int
	timeout time.Duration
	keep    bool
	workDir string
	pprof   string
	rate    int
}

func main() {
	var o options
	flag.Var(&o.agents, "agent", "label=path of a flowscope-agent binary; repeat to compare binaries (default agent=_output/bin/flowscope-agent)")
	flag.IntVar(&o.lines, "lines", 200000, "Hubble export lines appended in each round")
	flag.IntVar(&o.rounds, "rounds", 5, "rounds of each binary, run alternately")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "how long one round may take")
	flag.BoolVar(&o.keep, "keep", false, "keep each round's directory (store, logs)")
	flag.StringVar(&o.workDir, "work-dir", "", "parent of the rounds' directories (default: a temporary directory)")
	flag.IntVar(&o.rate, "rate", 0, "append the lines at this many a second, as a node's Hubble writes them, instead of all at once (0); lines/s then says only that the agent kept up, and bytes on disk per flow are what a node at this rate keeps")
	flag.StringVar(&o.pprof, "pprof", "", "directory for a CPU profile of each round's agent while it ingests (<label>-<round>.pprof; turns the agents' --profiling on)")
	flag.Parse()
	if len(o.agents) == 0 {
		o.agents = agentFlag{{"agent", "_output/bin/flowscope-agent"}}
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "replayload:", err)
		os.Exit(1)
	}
}

type result struct {
	label    string
	commits  float64 // store writes (ingest batches) meanwhile
	seconds  float64 // from the append to the last flow stored
	cpu      float64 // the agent's CPU seconds meanwhile
	listSecs float64
	disk     int64 // bytes the data directory takes after a clean stop (du)
}

func (r result) linesPerSec(n int) float64 { return float64(n) / r.seconds }

func (r result) bytesPerFlow(n int) float64 { return float64(r.disk) / float64(n) }

func run(o options) error {
	for _, b := range o.agents {
		if _, err := os.Stat(b.path); err != nil {
			return err
		}
	}
	dir := o.workDir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "replayload-"); err != nil {
			return err
		}
		if !o.keep {
			defer os.RemoveAll(dir)
		}
	}
	certs, err := makeCerts(filepath.Join(dir, "certs"))
	if err != nil {
		return fmt.Errorf("make certificates: %w", err)
	}
	fmt.Printf("replayload: generating %d lines\n", o.lines)
	blob, err := generate(o.lines)
	if err != nil {
		return err
	}
	fmt.Printf("replayload: %d lines, %.1f MiB, %.0f bytes a line\n", o.lines, float64(len(blob))/(1<<20), float64(len(blob))/float64(o.lines))

	var results []result
	for r := 1; r <= o.rounds; r++ {
		order := slices.Clone(o.agents)
		if r%2 == 0 {
			slices.Reverse(order)
		}
		for _, b := range order {
			res, err := round(o, b, filepath.Join(dir, fmt.Sprintf("%s-%d", b.label, r)), certs, blob)
			if err != nil {
				return fmt.Errorf("round %d of %s: %w", r, b.label, err)
			}
			fmt.Printf("round %d %-10s %8.0f lines/s  %6.2f s  agent CPU %6.2f s (%.1f µs/line)  %6.0f flows/commit  list of all %.2f s  disk %.1f B/flow\n",
				r, b.label, res.linesPerSec(o.lines), res.seconds, res.cpu, res.cpu/float64(o.lines)*1e6, float64(o.lines)/res.commits, res.listSecs, res.bytesPerFlow(o.lines))
			results = append(results, res)
		}
	}
	how := "appended at once"
	if o.rate > 0 {
		how = fmt.Sprintf("appended at %d a second", o.rate)
	}
	fmt.Printf("\n%d lines %s, %d rounds each, alternating; lines/s = lines / (time from the first append until the agent stored the last one); disk = the data directory's blocks (du) after a clean stop, per flow\n", o.lines, how, o.rounds)
	jsonPerLine := float64(len(blob)) / float64(o.lines)
	var base float64
	for i, b := range o.agents {
		var rates, cpus, disks []float64
		for _, res := range results {
			if res.label == b.label {
				rates = append(rates, res.linesPerSec(o.lines))
				cpus = append(cpus, res.cpu/float64(o.lines)*1e6)
				disks = append(disks, res.bytesPerFlow(o.lines))
			}
		}
		med := median(rates)
		ratio := ""
		if i == 0 {
			base = med
		} else {
			ratio = fmt.Sprintf("  %.2fx %s", med/base, o.agents[0].label)
		}
		fmt.Printf("%-10s lines/s median %8.0f (min %8.0f, max %8.0f)  agent CPU µs/line median %6.1f (min %6.1f, max %6.1f)  disk B/flow median %6.1f (min %6.1f, max %6.1f), %.1fx smaller than the JSON%s\n",
			b.label, med, slices.Min(rates), slices.Max(rates), median(cpus), slices.Min(cpus), slices.Max(cpus),
			median(disks), slices.Min(disks), slices.Max(disks), jsonPerLine/median(disks), ratio)
	}
	return nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// generate returns n diverse export lines, newline-terminated, stamped over
// the last n milliseconds: recent enough for any retention.
func generate(n int) ([]byte, error) {
	start := time.Now().Add(-time.Duration(n) * time.Millisecond)
	tick := 0
	g := flowgen.New(flowgen.Options{NodeName: node, NodeIndex: -1, Seed: 1, Now: func() time.Time {
		tick++
		return start.Add(time.Duration(tick) * time.Millisecond)
	}})
	var buf bytes.Buffer
	for range n {
		line, err := g.Next()
		if err != nil {
			return nil, err
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	return buf.Bytes(), nil
}

func round(o options, b binary, dir string, c certFiles, blob []byte) (result, error) {
	res := result{label: b.label}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return res, err
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	grpcPort, metricsPort := freePort(), freePort()
	replay := filepath.Join(dir, "replay.jsonl")
	if err := os.WriteFile(replay, nil, 0o600); err != nil {
		return res, err
	}
	logFile, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		return res, err
	}
	defer logFile.Close()
	cmd := exec.Command(b.path,
		"--node-name="+node,
		"--data-dir="+filepath.Join(dir, "data"),
		"--replay-file="+replay,
		"--capture=off",
		"--listen-address=127.0.0.1:"+strconv.Itoa(grpcPort),
		"--metrics-bind-address=127.0.0.1:"+strconv.Itoa(metricsPort),
		"--tls-cert-file="+c.serverCert, "--tls-private-key-file="+c.serverKey, "--client-ca-file="+c.ca,
		"--flow-log-file="+filepath.Join(dir, "flows.log"),
		"--kubeconfig="+filepath.Join(dir, "no-kubeconfig"))
	if o.pprof != "" {
		cmd.Args = append(cmd.Args, "--profiling")
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return res, err
	}
	exited := make(chan struct{})
	var waitErr error // set before exited is closed
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	for {
		if _, err := scrape(ctx, metricsURL, "flowscope_agent_flows_ingested_total"); err == nil {
			break
		}
		select {
		case <-exited:
			return res, fmt.Errorf("agent exited: %w (log: %s)", waitErr, logFile.Name())
		case <-ctx.Done():
			return res, fmt.Errorf("agent not up: %w (log: %s)", ctx.Err(), logFile.Name())
		case <-time.After(100 * time.Millisecond):
		}
	}
	before, err := scrape(ctx, metricsURL, "flowscope_agent_flows_ingested_total")
	if err != nil {
		return res, err
	}
	profiled := make(chan error, 1)
	if o.pprof != "" {
		// Long enough for the whole ingest; cut short when the round ends.
		go func() {
			profiled <- fetch(ctx, fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", metricsPort, 20),
				filepath.Join(o.pprof, filepath.Base(dir)+".pprof"))
		}()
	} else {
		profiled <- nil
	}
	commits0, err := scrape(ctx, metricsURL, "flowscope_agent_ingest_batch_seconds_count")
	if err != nil {
		return res, err
	}
	cpu0, err := rusage.ProcessCPU(cmd.Process.Pid)
	if err != nil {
		return res, err
	}
	start := time.Now()
	if err := appendLines(ctx, replay, blob, o.rate); err != nil {
		return res, err
	}
	want := before + float64(o.lines)
	for {
		n, err := scrape(ctx, metricsURL, "flowscope_agent_flows_ingested_total")
		if err == nil && n >= want {
			break
		}
		select {
		case <-exited:
			return res, fmt.Errorf("agent exited: %w (log: %s)", waitErr, logFile.Name())
		case <-ctx.Done():
			return res, fmt.Errorf("%.0f of %d flows stored: %w (log: %s)", n-before, o.lines, ctx.Err(), logFile.Name())
		case <-time.After(100 * time.Millisecond):
		}
	}
	res.seconds = time.Since(start).Seconds()
	cpu, err := rusage.ProcessCPU(cmd.Process.Pid)
	if err != nil {
		return res, err
	}
	res.cpu = (cpu - cpu0).Seconds()
	commits, err := scrape(ctx, metricsURL, "flowscope_agent_ingest_batch_seconds_count")
	if err != nil {
		return res, err
	}
	res.commits = commits - commits0
	if err := <-profiled; err != nil {
		return res, fmt.Errorf("profile: %w", err)
	}

	listStart := time.Now()
	listed, err := listAll(ctx, fmt.Sprintf("127.0.0.1:%d", grpcPort), c)
	if err != nil {
		return res, fmt.Errorf("list through the agent: %w", err)
	}
	res.listSecs = time.Since(listStart).Seconds()
	if listed != o.lines {
		return res, fmt.Errorf("the agent lists %d flows, want %d", listed, o.lines)
	}

	// What the node keeps: the store after the agent's clean stop (Badger
	// closes its tables), as du counts it.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return res, err
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		return res, fmt.Errorf("agent did not stop within 30s of SIGTERM (log: %s)", logFile.Name())
	}
	if res.disk, _, err = diskusage.Dir(filepath.Join(dir, "data")); err != nil {
		return res, err
	}
	return res, nil
}

// appendLines appends blob's lines to the replay file: all at once, or at
// rate lines a second in slices of a tenth of a second.
func appendLines(ctx context.Context, path string, blob []byte, rate int) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	start, sent := time.Now(), 0
	for len(blob) > 0 {
		end := len(blob)
		if rate > 0 {
			due := int(time.Since(start).Seconds()*float64(rate)) + rate/10
			for end = 0; sent < due && end < len(blob); sent++ {
				nl := bytes.IndexByte(blob[end:], '\n')
				if nl < 0 {
					end = len(blob)
					break
				}
				end += nl + 1
			}
		}
		if _, err := f.Write(blob[:end]); err != nil {
			return err
		}
		if blob = blob[end:]; len(blob) > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func fetch(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// scrape reads one unlabelled sample from a Prometheus text page.
func scrape(ctx context.Context, url, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	// Not gzip, Go's default: compressing every page would cost the agent
	// more CPU than the polls are worth.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s in %s", name, url)
}

// listAll lists every flow of the agent, page by page, as flowscope-apiserver
// does, and returns how many there are.
func listAll(ctx context.Context, addr string, c certFiles) (int, error) {
	src, err := tlsutil.NewFileSource(c.clientCert, c.clientKey, c.ca)
	if err != nil {
		return 0, err
	}
	cfg := tlsutil.ForAgent(tlsutil.NewClientConfig(src), node)
	conn, err := grpc.NewClient(addr, append(agentwire.DialOptions(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))...)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	client := agentwire.NewClient(conn)
	req := &agentwire.ListRequest{Limit: 10000}
	n := 0
	for {
		resp, err := client.List(ctx, req)
		if err != nil {
			return n, err
		}
		n += len(resp.Flows)
		if !resp.More || len(resp.Flows) == 0 {
			return n, nil
		}
		cursor := flowfilter.CursorOf(&resp.Flows[len(resp.Flows)-1])
		req = &agentwire.ListRequest{Limit: 10000, SnapshotRV: resp.SnapshotRV, After: &cursor}
	}
}

type certFiles struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

// makeCerts writes a CA, the agent's serving certificate and
// flowscope-apiserver's client certificate into dir.
func makeCerts(dir string) (certFiles, error) {
	c := certFiles{
		ca:         filepath.Join(dir, "ca.crt"),
		serverCert: filepath.Join(dir, "agent.crt"), serverKey: filepath.Join(dir, "agent.key"),
		clientCert: filepath.Join(dir, "client.crt"), clientKey: filepath.Join(dir, "client.key"),
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return c, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return c, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "replayload-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return c, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return c, err
	}
	if err := writePEM(c.ca, "CERTIFICATE", caDER); err != nil {
		return c, err
	}
	leaf := func(serial int64, cn string, dns []string, usage x509.ExtKeyUsage, certFile, keyFile string) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, DNSNames: dns,
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		return errors.Join(writePEM(certFile, "CERTIFICATE", der), writePEM(keyFile, "EC PRIVATE KEY", keyDER))
	}
	return c, errors.Join(
		leaf(2, node, []string{tlsutil.AgentServerName(node)}, x509.ExtKeyUsageServerAuth, c.serverCert, c.serverKey),
		leaf(3, "flowscope-apiserver", nil, x509.ExtKeyUsageClientAuth, c.clientCert, c.clientKey))
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}
