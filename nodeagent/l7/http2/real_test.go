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

package http2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/l7"
)

// recorder keeps every write of a connection's client and server, with
// its time: the TCP segments a tap would see.
type recorder struct {
	mu       sync.Mutex
	events   []event
	accepted int
}

type event struct {
	dir  l7.Dir
	t    time.Time
	data []byte
}

type recConn struct {
	net.Conn
	r   *recorder
	dir l7.Dir
}

func (c *recConn) Write(p []byte) (int, error) {
	c.r.mu.Lock()
	// Taken under the lock, so events are in time order.
	c.r.events = append(c.r.events, event{c.dir, time.Now(), bytes.Clone(p)})
	c.r.mu.Unlock()
	return c.Conn.Write(p)
}

type recListener struct {
	net.Listener
	r *recorder
}

func (l recListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.r.mu.Lock()
	l.r.accepted++
	l.r.mu.Unlock()
	return &recConn{Conn: c, r: l.r, dir: l7.FromServer}, nil
}

func (r *recorder) listen(t *testing.T) net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return recListener{Listener: l, r: r}
}

func (r *recorder) dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &recConn{Conn: c, r: r, dir: l7.FromClient}, nil
}

// chunks turns the writes from time from on into the chunks the stream
// layer would deliver: segments of mss bytes, the first budget of each
// sampled (0: all), offsets counted from the first byte kept.
func (r *recorder) chunks(from time.Time, budget int) []l7.Chunk {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []l7.Chunk
	var off [2]uint64
	for _, e := range r.events {
		if e.t.Before(from) {
			continue
		}
		for b := e.data; len(b) > 0; {
			seg := b[:min(mss, len(b))]
			b = b[len(seg):]
			data := seg
			if budget > 0 && len(data) > budget {
				data = data[:budget]
			}
			out = append(out, l7.Chunk{Dir: e.dir, Time: e.t, Off: off[e.dir], Len: len(seg), Data: data})
			off[e.dir] += uint64(len(seg))
		}
	}
	return out
}

// replay feeds the chunks to a parser, then expires what is left.
func replay(chunks []l7.Chunk, s l7.Start) []l7.Exchange {
	c := Protocol{}.New(s)
	var out []l7.Exchange
	for _, ch := range chunks {
		out = append(out, c.Feed(ch)...)
	}
	return append(out, c.Expire(time.Now().Add(time.Hour), time.Minute)...)
}

// call is what a client did, and the record it should make.
type call struct {
	name       string
	start, end time.Time
	want       v1alpha1.Layer7
	minLatency time.Duration // the server slept that long
	before     bool          // its path was used before a late join
}

type calls struct {
	mu   sync.Mutex
	list []call
}

func (cs *calls) do(t *testing.T, name string, want v1alpha1.Layer7, sleep time.Duration, f func() error) {
	start := time.Now()
	err := f()
	end := time.Now()
	if err != nil {
		t.Errorf("%s: %v", name, err)
	}
	cs.mu.Lock()
	cs.list = append(cs.list, call{name: name, start: start, end: end, want: want, minLatency: sleep})
	cs.mu.Unlock()
}

func (cs *calls) since(t time.Time) []call {
	var out []call
	for _, c := range cs.list {
		if !c.start.Before(t) {
			out = append(out, c)
		}
	}
	return out
}

func grpcRecord(method string, code codes.Code, message string) v1alpha1.Layer7 {
	return v1alpha1.Layer7{Type: v1alpha1.L7TypeGRPC, GRPC: &v1alpha1.GRPC{Service: "test.v1.Echo", Method: method, StatusCode: int32(code), Message: message}}
}

func httpRecord(method, url string, code int) v1alpha1.Layer7 {
	return v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, HTTP: &v1alpha1.HTTP{Method: method, URL: url, Code: int32(code), Protocol: "HTTP/2"}}
}

// fits reports whether exchange ex can be call c's: its times lie within
// the call, its latency within what the client measured and no less than
// the server slept, and its record equals the call's, or, when partial,
// every field it holds does.
func fits(ex l7.Exchange, c call) bool {
	if !ex.Request.IsZero() && (ex.Request.Before(c.start) || ex.Request.After(c.end)) ||
		!ex.Response.IsZero() && (ex.Response.Before(c.start) || ex.Response.After(c.end)) {
		return false
	}
	if !ex.Request.IsZero() && !ex.Response.IsZero() {
		if l := ex.Response.Sub(ex.Request); l > c.end.Sub(c.start) || l < c.minLatency {
			return false
		}
	}
	rec := ex.Record
	if ex.Partial != rec.Partial || rec.Latency != nil {
		return false
	}
	rec.Partial = false
	if !ex.Partial {
		return reflect.DeepEqual(rec, c.want)
	}
	eq := func(got, want string) bool { return got == "" || got == want }
	switch w := c.want; {
	case rec.GRPC != nil:
		return w.GRPC != nil && rec.HTTP == nil && eq(rec.GRPC.Service, w.GRPC.Service) &&
			eq(rec.GRPC.Method, w.GRPC.Method) && (rec.GRPC.StatusCode == 0 || rec.GRPC.StatusCode == w.GRPC.StatusCode) &&
			eq(rec.GRPC.Message, w.GRPC.Message)
	case rec.HTTP != nil && w.GRPC != nil:
		// A gRPC call not known as one: an HTTP/2 POST, status 200.
		return eq(rec.HTTP.Method, "POST") && eq(rec.HTTP.URL, "/"+w.GRPC.Service+"/"+w.GRPC.Method) &&
			(rec.HTTP.Code == 0 || rec.HTTP.Code == 200) && rec.HTTP.Protocol == "HTTP/2" && rec.HTTP.Headers == nil
	case rec.HTTP != nil && w.HTTP != nil:
		return eq(rec.HTTP.Method, w.HTTP.Method) && eq(rec.HTTP.URL, w.HTTP.URL) &&
			(rec.HTTP.Code == 0 || rec.HTTP.Code == w.HTTP.Code) && rec.HTTP.Protocol == "HTTP/2" && rec.HTTP.Headers == nil
	}
	return false
}

// match pairs exchanges with calls (a maximum bipartite matching over
// fits): it fails the test for an exchange that fits no call, and
// returns for each call its exchange (-1: none).
func match(t *testing.T, cs []call, exs []l7.Exchange) []int {
	t.Helper()
	of := make([]int, len(cs)) // call -> exchange
	for i := range of {
		of[i] = -1
	}
	var try func(e int, seen []bool) bool
	try = func(e int, seen []bool) bool {
		for i, c := range cs {
			if seen[i] || !fits(exs[e], c) {
				continue
			}
			seen[i] = true
			if of[i] < 0 || try(of[i], seen) {
				of[i] = e
				return true
			}
		}
		return false
	}
	for e := range exs {
		if !try(e, make([]bool, len(cs))) {
			t.Errorf("exchange %s fits no call", describe(exs[e]))
		}
	}
	return of
}

func describe(ex l7.Exchange) string {
	r := ex.Record
	s := string(r.Type)
	if r.HTTP != nil {
		s += fmt.Sprintf(" %s %q %d", r.HTTP.Method, r.HTTP.URL, r.HTTP.Code)
	}
	if r.GRPC != nil {
		s += fmt.Sprintf(" %s/%s %d", r.GRPC.Service, r.GRPC.Method, r.GRPC.StatusCode)
	}
	if ex.Partial {
		s += " partial"
	}
	if !ex.Request.IsZero() && !ex.Response.IsZero() {
		s += " " + ex.Response.Sub(ex.Request).String()
	}
	return s
}

// checkExact: one exchange per call, none partial.
func checkExact(t *testing.T, cs []call, exs []l7.Exchange) {
	t.Helper()
	of := match(t, cs, exs)
	for i, e := range of {
		switch {
		case e < 0:
			t.Errorf("call %s: no exchange", cs[i].name)
		case exs[e].Partial:
			t.Errorf("call %s: partial %s", cs[i].name, describe(exs[e]))
		}
	}
	if len(exs) != len(cs) {
		t.Errorf("%d exchanges for %d calls", len(exs), len(cs))
	}
}

// checkLossy: every exchange is one call's (match), and says so.
func checkLossy(t *testing.T, cs []call, exs []l7.Exchange) {
	t.Helper()
	of := match(t, cs, exs)
	var missing, partial int
	for _, e := range of {
		if e < 0 {
			missing++
		} else if exs[e].Partial {
			partial++
		}
	}
	t.Logf("%d calls: %d exchanges, %d exact, %d partial, %d missing", len(cs), len(exs), len(exs)-partial, partial, missing)
}

// checkLate: after a late join, every call has its exchange; calls of a
// path used before the join do not know it, calls of a new path do.
func checkLate(t *testing.T, cs []call, exs []l7.Exchange) {
	t.Helper()
	of := match(t, cs, exs)
	for i, e := range of {
		if e < 0 {
			t.Errorf("call %s: no exchange", cs[i].name)
			continue
		}
		ex, c := exs[e], cs[i]
		if ex.Request.IsZero() || ex.Response.IsZero() {
			t.Errorf("call %s: %s not paired", c.name, describe(ex))
		}
		path := recordPath(ex.Record)
		switch {
		case c.before && (path != "" || !ex.Partial):
			t.Errorf("call %s of a path from before the join: %s", c.name, describe(ex))
		case !c.before && path == "":
			t.Errorf("call %s of a new path: %s", c.name, describe(ex))
		}
		t.Logf("call %-22s %s", c.name, describe(ex))
	}
	if len(exs) != len(cs) {
		t.Errorf("%d exchanges for %d calls", len(exs), len(cs))
	}
}

func recordPath(r v1alpha1.Layer7) string {
	if r.GRPC != nil && r.GRPC.Service != "" {
		return "/" + r.GRPC.Service + "/" + r.GRPC.Method
	}
	if r.HTTP != nil {
		return r.HTTP.URL
	}
	return ""
}

// budgets are the sampling budgets tried: all, the maximum, the default.
var budgets = []int{0, 1024, 512}

// recording is a connection's bytes and the calls made on it, with a
// moment between calls to join at.
type recording struct {
	rec   *recorder
	calls []call
	join  time.Time
	// before: whether a call after join uses a path from before it.
	before func(c call) bool
	// exactLate: whether a call after join must still be exact.
	exactLate func(c call) bool
}

func TestH2C(t *testing.T) {
	r := recordH2C(t)
	for _, budget := range budgets {
		t.Run(fmt.Sprintf("budget %d", budget), func(t *testing.T) {
			exs := replay(r.rec.chunks(time.Time{}, budget), handshake)
			if budget == 0 {
				checkExact(t, r.calls, exs)
			} else {
				checkLossy(t, r.calls, exs)
			}
		})
	}
	t.Run("late join", func(t *testing.T) { r.checkLate(t) })
}

func (r *recording) checkLate(t *testing.T) {
	var late []call
	for _, c := range r.calls {
		if !c.start.Before(r.join) {
			c.before = r.before(c)
			late = append(late, c)
		}
	}
	exs := replay(r.rec.chunks(r.join, 0), l7.Start{})
	checkLate(t, late, exs)
	if r.exactLate == nil {
		return
	}
	for i, e := range match(t, late, exs) {
		if e >= 0 && r.exactLate(late[i]) && exs[e].Partial {
			t.Errorf("call %s: %s, want exact", late[i].name, describe(exs[e]))
		}
	}
}

func recordH2C(t *testing.T) *recording {
	rec := &recorder{}
	l := rec.listen(t)
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		q := r.URL.Query()
		ms, _ := strconv.Atoi(q.Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		code, _ := strconv.Atoi(q.Get("code"))
		if code == 0 {
			code = http.StatusOK
		}
		n, _ := strconv.Atoi(q.Get("size"))
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(code)
		_, _ = w.Write(bytes.Repeat([]byte("x"), n))
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	tr := &http.Transport{Protocols: &protos, DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return rec.dial(ctx, addr) }}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	base := "http://" + l.Addr().String()
	var cs calls
	get := func(method, path string, body int, wantCode int, sleep time.Duration) {
		cs.do(t, method+" "+path, httpRecord(method, path, wantCode), sleep, func() error {
			var rd io.Reader
			if body > 0 {
				rd = bytes.NewReader(make([]byte, body))
			}
			req, err := http.NewRequest(method, base+path, rd)
			if err != nil {
				return err
			}
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != wantCode || resp.Proto != "HTTP/2.0" {
				return fmt.Errorf("%s %d", resp.Proto, resp.StatusCode)
			}
			return nil
		})
	}
	get("GET", "/a", 0, 200, 0)
	get("GET", "/a?code=404", 0, 404, 0)
	get("POST", "/upload?code=201", 3000, 201, 0)
	get("GET", "/big?size=20000", 0, 200, 0)
	get("GET", "/a", 0, 200, 0)
	var wg sync.WaitGroup
	for i, code := range []int{200, 201, 202, 204, 206, 404, 500, 503} {
		wg.Go(func() {
			ms := (i * 7) % 40
			get("GET", fmt.Sprintf("/slow/%d?ms=%d&code=%d", i, ms, code), 0, code, time.Duration(ms)*time.Millisecond)
		})
	}
	wg.Wait()
	time.Sleep(20 * time.Millisecond) // the connection settles: nothing in flight at the join
	join := time.Now()
	get("GET", "/a", 0, 200, 0)
	get("GET", "/a?code=404", 0, 404, 0)
	get("GET", "/new", 0, 200, 0)
	get("GET", "/new", 0, 200, 0)
	get("GET", "/new?code=503", 0, 503, 0)
	get("POST", "/upload?code=201", 3000, 201, 0)
	if rec.accepted != 1 {
		t.Fatalf("%d connections", rec.accepted)
	}
	return &recording{rec: rec, calls: cs.since(time.Time{}), join: join, before: func(c call) bool {
		return c.name != "GET /new" && c.name != "GET /new?code=503"
	}, exactLate: func(c call) bool {
		// A new path, a static status, and GET (never gRPC): what the
		// fields from before the join were cannot matter.
		return c.name == "GET /new"
	}}
}

// echoService is a gRPC service written by hand (no generated code):
// wrapperspb.StringValue in and out.
var echoService = grpc.ServiceDesc{
	ServiceName: "test.v1.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Echo", Handler: unary(func(in string) (string, error) { return in, nil })},
		{MethodName: "Hello", Handler: unary(func(in string) (string, error) { return "hello " + in, nil })},
		{MethodName: "Fail", Handler: unary(func(in string) (string, error) {
			return "", status.Error(codes.NotFound, "no "+in)
		})},
		{MethodName: "Big", Handler: unary(func(in string) (string, error) {
			n, _ := strconv.Atoi(in)
			return strings.Repeat("x", n), nil
		})},
		{MethodName: "Sleep", Handler: unary(func(in string) (string, error) {
			// "<ms> <code>"
			ms, code, _ := strings.Cut(in, " ")
			n, _ := strconv.Atoi(ms)
			c, _ := strconv.Atoi(code)
			time.Sleep(time.Duration(n) * time.Millisecond)
			if c != 0 {
				return "", status.Error(codes.Code(c), "as asked")
			}
			return "slept", nil
		})},
	},
	Streams: []grpc.StreamDesc{{StreamName: "Count", ServerStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
		in := new(wrapperspb.StringValue)
		if err := ss.RecvMsg(in); err != nil {
			return err
		}
		n, _ := strconv.Atoi(in.Value)
		for i := range n {
			if err := ss.SendMsg(wrapperspb.String(strconv.Itoa(i))); err != nil {
				return err
			}
		}
		return nil
	}}},
}

func unary(f func(string) (string, error)) grpc.MethodHandler {
	return func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		in := new(wrapperspb.StringValue)
		if err := dec(in); err != nil {
			return nil, err
		}
		out, err := f(in.Value)
		if err != nil {
			return nil, err
		}
		return wrapperspb.String(out), nil
	}
}

func TestGRPC(t *testing.T) {
	r := recordGRPC(t)
	for _, budget := range budgets {
		t.Run(fmt.Sprintf("budget %d", budget), func(t *testing.T) {
			exs := replay(r.rec.chunks(time.Time{}, budget), handshake)
			if budget == 0 || budget == 1024 {
				checkExact(t, r.calls, exs)
			} else {
				checkLossy(t, r.calls, exs)
			}
		})
	}
	t.Run("late join", func(t *testing.T) { r.checkLate(t) })
}

func recordGRPC(t *testing.T) *recording {
	rec := &recorder{}
	l := rec.listen(t)
	gs := grpc.NewServer()
	gs.RegisterService(&echoService, struct{}{})
	go func() { _ = gs.Serve(l) }()
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient("passthrough:///"+l.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(rec.dial))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	ctx := context.Background()
	var cs calls
	invoke := func(method, in string, want codes.Code, sleep time.Duration) {
		var msg string // the server's status message
		switch {
		case method == "Fail":
			msg = "no " + in
		case want != codes.OK:
			msg = "as asked"
		}
		cs.do(t, method+" "+in, grpcRecord(method, want, msg), sleep, func() error {
			err := cc.Invoke(ctx, "/test.v1.Echo/"+method, wrapperspb.String(in), new(wrapperspb.StringValue))
			if status.Code(err) != want {
				return fmt.Errorf("status %w, want %v", err, want)
			}
			return nil
		})
	}
	count := func(n int) {
		cs.do(t, fmt.Sprintf("Count %d", n), grpcRecord("Count", codes.OK, ""), 0, func() error {
			s, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/test.v1.Echo/Count")
			if err != nil {
				return err
			}
			if err := s.SendMsg(wrapperspb.String(strconv.Itoa(n))); err != nil {
				return err
			}
			if err := s.CloseSend(); err != nil {
				return err
			}
			var got int
			for {
				err := s.RecvMsg(new(wrapperspb.StringValue))
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return err
				}
				got++
			}
			if got != n {
				return fmt.Errorf("%d messages", got)
			}
			return nil
		})
	}
	invoke("Echo", "hi", codes.OK, 0)
	invoke("Fail", "thing", codes.NotFound, 0)
	count(5)
	invoke("Big", "2200", codes.OK, 0)
	invoke("Echo", "again", codes.OK, 0)
	var wg sync.WaitGroup
	for i, code := range []codes.Code{codes.OK, codes.Canceled, codes.InvalidArgument, codes.DeadlineExceeded,
		codes.NotFound, codes.AlreadyExists, codes.PermissionDenied, codes.Unavailable} {
		wg.Go(func() {
			ms := (i * 7) % 40
			invoke("Sleep", fmt.Sprintf("%d %d", ms, code), code, time.Duration(ms)*time.Millisecond)
		})
	}
	wg.Wait()
	time.Sleep(20 * time.Millisecond)
	join := time.Now()
	invoke("Echo", "late", codes.OK, 0)
	invoke("Fail", "late", codes.NotFound, 0)
	invoke("Hello", "late", codes.OK, 0)
	invoke("Hello", "again", codes.OK, 0)
	count(3)
	if rec.accepted != 1 {
		t.Fatalf("%d connections", rec.accepted)
	}
	return &recording{rec: rec, calls: cs.since(time.Time{}), join: join, before: func(c call) bool {
		return !strings.HasPrefix(c.name, "Hello")
	}}
}
