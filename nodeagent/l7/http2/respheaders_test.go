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
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/l7"
)

// TestH2CResponseHeaders: an h2c net/http server's response headers that
// the allow-list names are kept, Set-Cookie never, even with "*"; without
// an allow-list none is. (The trailers of a call that is not gRPC come
// after its record.)
//
// Each call's Server header differs, so that a record sharing the array of
// a later call's headers (the stream's, which the connection reuses)
// shows the later value.
func TestH2CResponseHeaders(t *testing.T) {
	rec := &recorder{}
	l := rec.listen(t)
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	var calls atomic.Int32
	srv := &http.Server{Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Server", "orders/"+strconv.Itoa(int(calls.Add(1))))
		w.Header().Set("Set-Cookie", "session=s3cr3t")
		w.Header().Set("Trailer", "X-Checksum")
		_, _ = io.WriteString(w, `{"id":42}`)
		w.Header().Set("X-Checksum", "abc123")
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	tr := &http.Transport{Protocols: &protos, DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return rec.dial(ctx, addr) }}
	t.Cleanup(tr.CloseIdleConnections)
	start := time.Now()
	for range 2 {
		resp, err := (&http.Client{Transport: tr}).Get("http://" + l.Addr().String() + "/orders")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.Proto != "HTTP/2.0" {
			t.Fatalf("%s, want HTTP/2.0", resp.Proto)
		}
	}
	chunks := rec.chunks(start, 0)

	want := map[string]string{"content-type": "application/json", "server": "", "trailer": "X-Checksum", "content-length": "", "date": ""}
	for name, tc := range map[string]struct {
		allow []string
		keys  []string // sorted
	}{
		"none":                 {nil, nil},
		"content-type, server": {[]string{"Content-Type", "SERVER"}, []string{"content-type", "server"}},
		"all":                  {[]string{"*"}, []string{"content-length", "content-type", "date", "server", "trailer"}},
	} {
		t.Run(name, func(t *testing.T) {
			p := Protocol{}
			if tc.allow != nil {
				p.ResponseHeaders = l7.NewHeaderAllowlist(tc.allow, []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie"})
			}
			c := p.New(l7.Start{FromHandshake: true})
			var xs []l7.Exchange
			for _, ch := range chunks {
				xs = append(xs, c.Feed(ch)...)
			}
			if len(xs) != 2 {
				t.Fatalf("%d exchanges, want 2", len(xs))
			}
			for i, x := range xs {
				h := x.Record.HTTP
				if x.Partial || h == nil || h.Code != 200 || h.URL != "/orders" {
					t.Fatalf("exchange %d: %s", i, describe(x))
				}
				var keys []string
				for _, f := range h.ResponseHeaders {
					keys = append(keys, f.Key)
					v, ok := want[f.Key]
					if f.Key == "server" {
						v = "orders/" + strconv.Itoa(i+1)
					}
					if !ok || v != "" && v != f.Value {
						t.Errorf("exchange %d: %s: %q, want %q", i, f.Key, f.Value, v)
					}
				}
				slices.Sort(keys)
				if !slices.Equal(keys, tc.keys) {
					t.Errorf("exchange %d: response headers %q, want %q", i, keys, tc.keys)
				}
			}
		})
	}
}

// TestGRPCResponseHeaders: a grpc-go call's response headers and trailers
// that the allow-list names are kept in its gRPC record (Set-Cookie never,
// even with "*"), and its grpc-message is kept percent-decoded whatever
// the list says. Each call's x-served-by differs, so that a record sharing
// a later call's array shows it.
func TestGRPCResponseHeaders(t *testing.T) {
	rec := &recorder{}
	l := rec.listen(t)
	const message = "order 42: 100% gone, ünknown\n"
	var calls atomic.Int32
	gs := grpc.NewServer()
	gs.RegisterService(&grpc.ServiceDesc{
		ServiceName: "test.v1.Orders",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Get", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			if err := dec(new(wrapperspb.StringValue)); err != nil {
				return nil, err
			}
			_ = grpc.SetHeader(ctx, metadata.Pairs("x-served-by", "orders-"+strconv.Itoa(int(calls.Add(1))), "set-cookie", "session=s3cr3t"))
			_ = grpc.SetTrailer(ctx, metadata.Pairs("x-checksum", "abc123"))
			return nil, status.Error(codes.NotFound, message)
		}}},
	}, struct{}{})
	go func() { _ = gs.Serve(l) }()
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient("passthrough:///"+l.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(rec.dial))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	for range 2 {
		err := cc.Invoke(context.Background(), "/test.v1.Orders/Get", wrapperspb.String("42"), new(wrapperspb.StringValue))
		if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != message {
			t.Fatalf("call: %v", err)
		}
	}
	chunks := rec.chunks(time.Time{}, 0)

	credentials := []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie"}
	for name, tc := range map[string]struct {
		allow []string
		want  []v1alpha1.HTTPHeader // in wire order: headers, then trailers
	}{
		"none":                    {nil, nil},
		"x-served-by, x-checksum": {[]string{"X-Served-By", "x-checksum"}, []v1alpha1.HTTPHeader{{Key: "x-served-by", Value: "orders-1"}, {Key: "x-checksum", Value: "abc123"}}},
		"all": {[]string{"*"}, []v1alpha1.HTTPHeader{
			{Key: "content-type", Value: "application/grpc"}, {Key: "x-served-by", Value: "orders-1"},
			{Key: "grpc-status", Value: "5"}, {Key: "grpc-message", Value: "order 42: 100%25 gone, %C3%BCnknown%0A"}, {Key: "x-checksum", Value: "abc123"},
		}},
	} {
		t.Run(name, func(t *testing.T) {
			p := Protocol{}
			if tc.allow != nil {
				p.ResponseHeaders = l7.NewHeaderAllowlist(tc.allow, credentials)
			}
			c := p.New(l7.Start{FromHandshake: true})
			var xs []l7.Exchange
			for _, ch := range chunks {
				xs = append(xs, c.Feed(ch)...)
			}
			if len(xs) != 2 {
				t.Fatalf("%d exchanges, want 2", len(xs))
			}
			for i, x := range xs {
				g := x.Record.GRPC
				if x.Partial || g == nil || g.Service != "test.v1.Orders" || g.Method != "Get" || g.StatusCode != int32(codes.NotFound) {
					t.Fatalf("exchange %d: %s", i, describe(x))
				}
				if g.Message != message {
					t.Errorf("exchange %d: message %q, want %q", i, g.Message, message)
				}
				want := slices.Clone(tc.want)
				for k := range want {
					if want[k].Key == "x-served-by" {
						want[k].Value = "orders-" + strconv.Itoa(i+1)
					}
				}
				if !slices.Equal(g.ResponseHeaders, want) {
					t.Errorf("exchange %d: response headers %q, want %q", i, g.ResponseHeaders, want)
				}
			}
		})
	}
}
