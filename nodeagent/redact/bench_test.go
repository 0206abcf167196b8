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

package redact

import (
	"testing"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// BenchmarkFlow redacts what make bench-l7's loads make of one exchange,
// with the agent's default allow-list: a net/http GET and a grpc-go unary
// call.
func BenchmarkFlow(b *testing.B) {
	r, err := New(Options{HeaderAllowlist: DefaultHeaderAllowlist})
	if err != nil {
		b.Fatal(err)
	}
	http := func() *v1alpha1.Layer7 {
		return &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, HTTP: &v1alpha1.HTTP{
			Code: 200, Method: "GET", URL: "/api/orders?id=42", Protocol: "HTTP/1.1",
			Headers: []v1alpha1.HTTPHeader{{Key: "Host", Value: "10.244.1.3:8080"}, {Key: "User-Agent", Value: "Go-http-client/1.1"},
				{Key: "Accept-Encoding", Value: "gzip"}},
			ResponseHeaders: []v1alpha1.HTTPHeader{{Key: "Content-Type", Value: "application/json"}, {Key: "Content-Length", Value: "27"}},
		}}
	}
	grpc := func() *v1alpha1.Layer7 {
		return &v1alpha1.Layer7{Type: v1alpha1.L7TypeGRPC, GRPC: &v1alpha1.GRPC{
			Service: "grpc.health.v1.Health", Method: "Check",
			ResponseHeaders: []v1alpha1.HTTPHeader{{Key: "content-type", Value: "application/grpc"}},
		}}
	}
	for _, c := range []struct {
		name string
		l7   func() *v1alpha1.Layer7
	}{{"HTTP1", http}, {"GRPC", grpc}} {
		b.Run(c.name, func(b *testing.B) {
			// Each round redacts a fresh record, as the pipeline does,
			// and once more the record it already redacted.
			fresh, f := c.l7(), &v1alpha1.Flow{}
			b.ReportAllocs()
			for b.Loop() {
				l := *fresh
				h, g := l.HTTP, l.GRPC
				if h != nil {
					hc := *h
					hc.Headers, hc.ResponseHeaders = append([]v1alpha1.HTTPHeader(nil), h.Headers...), append([]v1alpha1.HTTPHeader(nil), h.ResponseHeaders...)
					l.HTTP = &hc
				}
				if g != nil {
					gc := *g
					gc.ResponseHeaders = append([]v1alpha1.HTTPHeader(nil), g.ResponseHeaders...)
					l.GRPC = &gc
				}
				f.L7 = &l
				r.Flow(f)
			}
		})
	}
}

// TestFlowAllocations: redacting a record whose URL keeps its form and
// whose headers' names are tokens allocates nothing, whatever it rewrites.
func TestFlowAllocations(t *testing.T) {
	r, err := New(Options{HeaderAllowlist: DefaultHeaderAllowlist})
	if err != nil {
		t.Fatal(err)
	}
	headers := []v1alpha1.HTTPHeader{{Key: "Host", Value: "db:8080"}, {Key: "User-Agent", Value: "Go-http-client/1.1"},
		{Key: "Authorization", Value: "Bearer x"}, {Key: "Referer", Value: "http://u:p@web/a?b"}, {Key: "content-type", Value: "text/plain"}}
	h := &v1alpha1.HTTP{Method: "GET", Headers: make([]v1alpha1.HTTPHeader, len(headers)), ResponseHeaders: make([]v1alpha1.HTTPHeader, len(headers))}
	f := &v1alpha1.Flow{L7: &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, HTTP: h}}
	if n := testing.AllocsPerRun(100, func() {
		h.URL = "/api/orders?id=42"
		copy(h.Headers, headers)
		copy(h.ResponseHeaders, headers)
		r.Flow(f)
	}); n != 0 {
		t.Errorf("%v allocations per flow", n)
	}
	if h.URL != "/api/orders" || h.Headers[0].Value != Marker || h.Headers[1].Value != "Go-http-client/1.1" ||
		h.Headers[2].Value != Marker || h.Headers[3].Value != Marker || h.ResponseHeaders[4].Value != "text/plain" {
		t.Errorf("redacted to %+v", h)
	}
}
