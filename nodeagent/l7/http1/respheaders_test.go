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
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"testing"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/l7"
)

// credentials are redact.Credentials, as the agent passes them.
var credentials = []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie"}

// TestLiveResponseHeaders: a net/http server's response headers that the
// allow-list names are kept, and Set-Cookie
// never is, even with "*"; without an allow-list none is.
func TestLiveResponseHeaders(t *testing.T) {
	r := newRecorder()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Server", "orders/1.2")
		w.Header().Set("Set-Cookie", "session=s3cr3t")
		w.Header().Set("X-Internal", "node-7")
		if req.URL.Path == "/missing" {
			w.WriteHeader(http.StatusNotFound)
		}
		_, _ = io.WriteString(w, `{"id":42}`)
	})}
	go func() { _ = srv.Serve(recListener{ln, r}) }()
	t.Cleanup(func() { _ = srv.Close() })
	c := &http.Client{Transport: &http.Transport{DialContext: func(_ context.Context, _, addr string) (net.Conn, error) { return r.dial(addr) }}}
	for _, path := range []string{"/orders", "/missing"} {
		resp, err := c.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	c.CloseIdleConnections()
	wires := r.all()
	if len(wires) != 1 {
		t.Fatalf("%d connections, want 1 kept alive", len(wires))
	}
	segs := wires[0].segments()

	for name, tc := range map[string]struct {
		allow []string
		want  []string // the keys kept, sorted; values as the server set them
	}{
		"none":                 {nil, nil},
		"content-type, server": {[]string{"content-type", "SERVER"}, []string{"Content-Type", "Server"}},
		"all":                  {[]string{"*"}, []string{"Content-Length", "Content-Type", "Date", "Server", "X-Internal"}},
	} {
		t.Run(name, func(t *testing.T) {
			var allow *l7.HeaderAllowlist
			if tc.allow != nil {
				allow = l7.NewHeaderAllowlist(tc.allow, credentials)
			}
			xs := replay(New(Options{ResponseHeaders: allow}), l7.Start{FromHandshake: true}, segs, 0)
			if len(xs) != 2 {
				t.Fatalf("%d exchanges, want 2", len(xs))
			}
			for i, x := range xs {
				h := x.Record.HTTP
				if x.Partial || h.Code != []int32{200, 404}[i] {
					t.Errorf("exchange %d: %+v", i, x)
				}
				var keys []string
				for _, f := range h.ResponseHeaders {
					keys = append(keys, f.Key)
					want := map[string]string{"Content-Type": "application/json", "Server": "orders/1.2", "X-Internal": "node-7", "Content-Length": "9"}[f.Key]
					if want != "" && f.Value != want {
						t.Errorf("exchange %d: %s: %q, want %q", i, f.Key, f.Value, want)
					}
				}
				slices.Sort(keys)
				if !slices.Equal(keys, tc.want) {
					t.Errorf("exchange %d: response headers %q, want %q", i, keys, tc.want)
				}
				if slices.ContainsFunc(h.ResponseHeaders, func(f v1alpha1.HTTPHeader) bool { return f.Key == "Set-Cookie" }) {
					t.Errorf("exchange %d: Set-Cookie kept", i)
				}
				if slices.ContainsFunc(h.Headers, func(f v1alpha1.HTTPHeader) bool { return f.Key == "Server" }) {
					t.Errorf("exchange %d: a response header among the request's", i)
				}
			}
		})
	}
}
