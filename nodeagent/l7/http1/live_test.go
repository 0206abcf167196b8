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

package http1

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"flowscope.io/flowscope/nodeagent/l7"
)

// budgets are the sampling budgets the tests replay with: the agent's
// default, a small one, and whole segments.
var budgets = []int{512, 128, 0}

// startServer runs a net/http server on 127.0.0.1 whose connections
// are recorded.
func startServer(t *testing.T, r *recorder) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		code, _ := strconv.Atoi(r.PathValue("code"))
		w.WriteHeader(code)
		_, _ = w.Write([]byte("status\n"))
	})
	mux.HandleFunc("/error", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		_, _ = w.Write(bytes.Repeat([]byte("b"), n))
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		parts, _ := strconv.Atoi(r.URL.Query().Get("parts"))
		for range parts {
			_, _ = w.Write(bytes.Repeat([]byte("c"), n/parts))
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		for ; n > 0; n -= 1000 {
			_, _ = w.Write(bytes.Repeat([]byte("s"), min(n, 1000)))
		}
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		_, _ = fmt.Fprintf(w, "%d\n", n)
	})
	mux.HandleFunc("/close", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = w.Write([]byte("bye\n"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(recListener{ln, r}) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// action is a request the client makes, and what it saw.
type action struct {
	method, path string
	body         int  // request body bytes
	chunked      bool // a body of unknown length: chunked
	expect       bool // Expect: 100-continue
	pad          int  // extra header fields
	code         int  // the status the server answers

	start, end time.Time // around Do, up to the response's head
	got        int
}

func actions() []*action {
	long := "/status/200?q=" + strings.Repeat("0123456789", 70)
	list := func() []*action {
		return []*action{
			{method: "GET", path: "/status/200", code: 200},
			{method: "GET", path: "/status/404", code: 404},
			{method: "GET", path: "/error", code: 500},
			{method: "HEAD", path: "/big?n=5000", code: 200},
			{method: "GET", path: "/status/204", code: 204},
			{method: "GET", path: "/status/304", code: 304},
			{method: "POST", path: "/echo", body: 1000, code: 200},
			{method: "PUT", path: "/echo", body: 200000, code: 200},
			{method: "POST", path: "/echo", body: 50000, chunked: true, code: 200},
			{method: "GET", path: "/big?n=300000", code: 200},
			{method: "GET", path: "/chunked?n=20000&parts=5", code: 200},
			{method: "GET", path: "/stream?n=100000", code: 200},
			{method: "DELETE", path: "/status/202", code: 202},
			{method: "PATCH", path: "/status/201", body: 10, code: 201},
			{method: "OPTIONS", path: "/status/200", code: 200},
			{method: "GET", path: long, code: 200},
			{method: "GET", path: "/status/200", pad: 20, code: 200},
			{method: "POST", path: "/echo", body: 3000, expect: true, code: 200},
			{method: "GET", path: "/status/503", code: 503},
		}
	}
	out := append(list(), list()...)
	return append(out, &action{method: "GET", path: "/close", code: 200})
}

// do makes the request a describes on c.
func (a *action) do(t *testing.T, c *http.Client, base string) {
	t.Helper()
	var body io.Reader
	if a.body > 0 {
		body = bytes.NewReader(bytes.Repeat([]byte("q"), a.body))
		if a.chunked {
			body = io.MultiReader(body) // hides the length
		}
	}
	req, err := http.NewRequestWithContext(context.Background(), a.method, base+a.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if a.expect {
		req.Header.Set("Expect", "100-continue")
	}
	for i := range a.pad {
		req.Header.Set(fmt.Sprintf("X-Pad-%02d", i), strings.Repeat("p", 30))
	}
	a.start = time.Now()
	resp, err := c.Do(req)
	a.end = time.Now()
	if err != nil {
		t.Fatalf("%s %s: %v", a.method, a.path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	a.got = resp.StatusCode
}

// keepAlive is a recorded session: the actions made one after the other
// on one kept-alive connection, then one that the server closes.
type keepAlive struct {
	acts []*action
	segs []segment
}

var (
	sessionOnce sync.Once
	session     keepAlive
	sessionErr  string
)

// recordSession records the keep-alive session once for the tests
// that replay it.
func recordSession(t *testing.T) keepAlive {
	t.Helper()
	sessionOnce.Do(func() {
		r := newRecorder()
		addr := startServer(t, r)
		client := &http.Client{Transport: &http.Transport{
			DialContext:           func(ctx context.Context, _, addr string) (net.Conn, error) { return r.dial(addr) },
			MaxConnsPerHost:       1,
			DisableCompression:    true,
			ExpectContinueTimeout: 5 * time.Second,
		}}
		acts := actions()
		for _, a := range acts {
			a.do(t, client, "http://"+addr)
		}
		client.CloseIdleConnections()
		wires := r.all()
		if len(wires) != 1 {
			sessionErr = fmt.Sprintf("the session used %d connections, want 1", len(wires))
			return
		}
		session = keepAlive{acts: acts, segs: wires[0].segments()}
	})
	if sessionErr != "" {
		t.Fatal(sessionErr)
	}
	return session
}

// TestLiveKeepAlive replays a real client's session with a real server
// at each budget: every exchange is reported once, paired, with the
// client's method, path and status and a latency within the client's
// round trip; Partial exactly when the sampled bytes cut the request's
// head.
func TestLiveKeepAlive(t *testing.T) {
	s := recordSession(t)
	truths := groundTruth(t, s.segs)
	if len(truths) != len(s.acts) {
		t.Fatalf("the streams hold %d exchanges, the client made %d", len(truths), len(s.acts))
	}
	for i, a := range s.acts {
		x := truths[i]
		if a.got != a.code || x.code != a.code || x.method != a.method || x.url != a.path {
			t.Fatalf("exchange %d: client %s %s got %d (want %d); the streams read %s %s %d", i, a.method, a.path, a.got, a.code, x.method, x.url, x.code)
		}
	}
	// What the session must hold for the test to cover it.
	cs, ss := stream(s.segs, l7.FromClient), stream(s.segs, l7.FromServer)
	for _, want := range []struct {
		b    []byte
		what string
	}{
		{cs, "Transfer-Encoding: chunked"}, {cs, "Expect: 100-continue"}, {ss, "HTTP/1.1 100 Continue"},
		{ss, "Transfer-Encoding: chunked"}, {ss, "HTTP/1.1 304"}, {ss, "HTTP/1.1 500"}, {ss, "Connection: close"},
	} {
		if !bytes.Contains(want.b, []byte(want.what)) {
			t.Errorf("the session has no %q", want.what)
		}
	}
	for _, budget := range budgets {
		t.Run(fmt.Sprintf("budget=%d", budget), func(t *testing.T) {
			p := New(Options{})
			xs := replay(p, l7.Start{FromHandshake: true}, s.segs, budget)
			paired := verify(t, xs, truths)
			if len(xs) != len(truths) || len(paired) != len(truths) {
				t.Errorf("%d exchanges, %d paired; want %d paired", len(xs), len(paired), len(truths))
			}
			cut := 0
			for _, x := range xs {
				i := -1
				for j, tr := range truths {
					if tr.req.Equal(x.Request) {
						i = j
					}
				}
				if i < 0 {
					continue
				}
				a, tr := s.acts[i], truths[i]
				if lat := x.Response.Sub(x.Request); lat < 0 || lat > a.end.Sub(a.start) || x.Request.Before(a.start) {
					t.Errorf("exchange %d (%s %s): latency %v, the client's round trip %v", i, a.method, a.path, lat, a.end.Sub(a.start))
				}
				whole := sampled(s.segs, l7.FromClient, tr.off, tr.headLen, budget)
				if x.Partial == whole {
					t.Errorf("exchange %d (%s %s): Partial %v, head wholly sampled %v", i, a.method, a.path, x.Partial, whole)
				}
				if !whole {
					cut++
				}
			}
			st := p.Stats()
			t.Logf("%d exchanges, %d with cut heads; stats: desyncs %d, malformed %d, cut heads %d, unpaired %d",
				len(xs), cut, st.Desyncs.Load(), st.Malformed.Load(), st.CutHeads.Load(), st.Unpaired.Load())
			if st.Malformed.Load() != 0 || st.Unpaired.Load() != 0 {
				t.Errorf("malformed %d, unpaired %d: want none", st.Malformed.Load(), st.Unpaired.Load())
			}
			if budget == 128 && cut == 0 {
				t.Error("no head was cut at 128 bytes: the test lost its point")
			}
		})
	}
}

// TestLiveLoss replays the session with segments lost (as a full ring
// buffer loses them) at random budgets: whatever is lost, no exchange is
// mis-paired or reported twice, and most survive.
func TestLiveLoss(t *testing.T) {
	s := recordSession(t)
	truths := groundTruth(t, s.segs)
	var total [3]int
	runs := 300
	for seed := range runs {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		loss := []float64{0.01, 0.05, 0.2}[seed%3]
		budget := []int{64, 128, 512, 1024, 0}[seed%5]
		var segs []segment
		for _, sg := range s.segs {
			if rng.Float64() >= loss {
				segs = append(segs, sg)
			}
		}
		paired := verify(t, replay(New(Options{}), l7.Start{FromHandshake: true}, segs, budget), truths)
		total[seed%3] += len(paired)
		if t.Failed() {
			t.Fatalf("seed %d (loss %v, budget %d)", seed, loss, budget)
		}
	}
	for i, loss := range []string{"1%", "5%", "20%"} {
		t.Logf("%s of segments lost: %.1f of %d exchanges paired on average", loss, float64(total[i])/float64(runs/3), len(truths))
	}
}

// TestLiveLateJoin replays the session from points in its middle, as an
// agent that starts late sees it: the exchanges that begin after the
// first response since the join are all paired, and nothing is
// mis-paired.
func TestLiveLateJoin(t *testing.T) {
	s := recordSession(t)
	truths := groundTruth(t, s.segs)
	for k := 1; k < len(s.segs); k += 7 {
		joined := s.segs[k:]
		var base [2]uint64
		var seen [2]bool
		joinOff := ^uint64(0) // the client's first byte seen
		for _, sg := range joined {
			if sg.dir == l7.FromClient {
				joinOff = sg.off
				break
			}
		}
		var segs []segment
		for _, sg := range joined {
			if !seen[sg.dir] {
				seen[sg.dir], base[sg.dir] = true, sg.off
			}
			sg.off -= base[sg.dir]
			segs = append(segs, sg)
		}
		// What came before the join is a gap: a request pairs once a
		// response was seen since.
		var firstResp time.Time
		for _, tr := range truths {
			if tr.respOff >= stream0(joined, l7.FromServer) {
				firstResp = tr.resp
				break
			}
		}
		for _, budget := range budgets {
			paired := verify(t, replay(New(Options{}), l7.Start{}, segs, budget), truths)
			for i, tr := range truths {
				if tr.off >= joinOff && !firstResp.IsZero() && tr.req.After(firstResp) && !paired[i] {
					t.Errorf("joined at segment %d, budget %d: exchange %d (%s %s) began after and was not paired", k, budget, i, tr.method, tr.url)
				}
			}
		}
	}
}

// rawSession writes raw requests on one recorded connection, all in
// one write, and reads the responses with net/http.
func rawSession(t *testing.T, r *recorder, addr string, reqs []string) []segment {
	t.Helper()
	c, err := r.dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(reqs, ""))); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for _, raw := range reqs {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			t.Fatal(err)
		}
		for {
			resp, err := http.ReadResponse(br, req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			if resp.StatusCode >= 200 {
				break
			}
		}
	}
	wires := r.all()
	return wires[len(wires)-1].segments()
}

// TestLivePipelining sends requests back to back on a raw connection:
// net/http's server answers them in order, and they pair in order; when
// the sampled bytes hide some requests, those before still pair and
// nothing is mis-paired.
func TestLivePipelining(t *testing.T) {
	r := newRecorder()
	addr := startServer(t, r)
	pad := "X-Trace: " + strings.Repeat("t", 60) + "\r\n"
	reqs := []string{
		"GET /status/200 HTTP/1.1\r\nHost: a\r\n" + pad + "\r\n",
		"GET /error HTTP/1.1\r\nHost: a\r\n" + pad + "\r\n",
		"HEAD /big?n=5000 HTTP/1.1\r\nHost: a\r\n" + pad + "\r\n",
		"GET /chunked?n=30000&parts=3 HTTP/1.1\r\nHost: a\r\n" + pad + "\r\n",
		"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
		"GET /status/204 HTTP/1.1\r\nHost: a\r\n" + pad + "\r\n",
		"GET /big?n=100000 HTTP/1.1\r\nHost: a\r\n" + pad + "\r\n",
		"GET /status/404 HTTP/1.1\r\nHost: a\r\n\r\n",
	}
	segs := rawSession(t, r, addr, reqs)
	truths := groundTruth(t, segs)
	if len(truths) != len(reqs) {
		t.Fatalf("%d exchanges in the streams, want %d", len(truths), len(reqs))
	}
	if n := len(stream(segs, l7.FromClient)); n > mss || n < 512 {
		t.Fatalf("the requests take %d bytes: want one segment over 512", n)
	}
	for _, budget := range []int{0, 512, 256, 128} {
		// The requests that start in the sampled bytes pair (the one cut
		// too, Partial): hidden ones come after them.
		want := 0
		for _, tr := range truths {
			if budget == 0 || tr.off < uint64(budget) {
				want++
			}
		}
		xs := replay(New(Options{}), l7.Start{FromHandshake: true}, segs, budget)
		paired := verify(t, xs, truths)
		for i := range truths {
			if paired[i] != (i < want) {
				t.Errorf("budget %d: exchange %d paired %v, want %v", budget, i, paired[i], i < want)
			}
		}
		if len(xs) != len(reqs) {
			t.Errorf("budget %d: %d exchanges, want %d", budget, len(xs), len(reqs))
		}
	}
}

// TestLiveClose covers bodies delimited by the connection's close
// (HTTP/1.0 without Content-Length) and Connection: close.
func TestLiveClose(t *testing.T) {
	r := newRecorder()
	addr := startServer(t, r)
	for _, raw := range []string{
		"GET /stream?n=100000 HTTP/1.0\r\nHost: a\r\n\r\n",
		"GET /status/500 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
	} {
		segs := rawSession(t, r, addr, []string{raw})
		truths := groundTruth(t, segs)
		for _, budget := range budgets {
			xs := replay(New(Options{}), l7.Start{FromHandshake: true}, segs, budget)
			if paired := verify(t, xs, truths); len(xs) != 1 || len(paired) != 1 {
				t.Errorf("%q at budget %d: %d exchanges, %d paired; want 1", raw, budget, len(xs), len(paired))
			}
		}
	}
}

// stream0 returns the offset of the first byte of dir in segs.
func stream0(segs []segment, dir l7.Dir) uint64 {
	for _, sg := range segs {
		if sg.dir == dir {
			return sg.off
		}
	}
	return ^uint64(0)
}
