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
	"net/url"
	"reflect"
	"strings"
	"testing"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

func TestURL(t *testing.T) {
	tests := []struct {
		name, in          string
		want, wantWithQry string // wantWithQry "" means the same as want
	}{
		{name: "empty", in: "", want: ""},
		{name: "path", in: "/v1/orders", want: "/v1/orders"},
		{name: "path and query", in: "/v1/orders?token=s&page=2", want: "/v1/orders", wantWithQry: "/v1/orders?token=s&page=2"},
		{name: "absolute", in: "http://api.svc:8080/v1/orders", want: "http://api.svc:8080/v1/orders"},
		{name: "absolute, query and fragment", in: "https://api.svc/a/b?x=1#frag", want: "https://api.svc/a/b", wantWithQry: "https://api.svc/a/b?x=1"},
		{name: "userinfo", in: "http://user:pw@api.svc:8080/v1/orders?token=s#f", want: "http://api.svc:8080/v1/orders", wantWithQry: "http://api.svc:8080/v1/orders?token=s"},
		{name: "user only", in: "http://user@api.svc/", want: "http://api.svc/"},
		{name: "userinfo holding '@' and ':'", in: "http://a@b:c:d@host/p", want: "http://host/p"},
		{name: "userinfo, no path", in: "http://user:pw@host", want: "http://host"},
		{name: "userinfo, query without path", in: "http://user:pw@host?q=1", want: "http://host", wantWithQry: "http://host?q=1"},
		{name: "'@' in the path stays", in: "/users/bob@example.com/profile", want: "/users/bob@example.com/profile"},
		{name: "'@' in the path of an absolute URL stays", in: "http://host/u/bob@x", want: "http://host/u/bob@x"},
		{name: "'@' in the query goes with it", in: "http://host/p?email=a@b", want: "http://host/p", wantWithQry: "http://host/p?email=a@b"},
		{name: "network-path reference", in: "//user:pw@host/p", want: "//host/p"},
		{name: "authority form", in: "host:443", want: "host:443"},
		{name: "authority form with userinfo", in: "user:pw@host:443", want: "host:443"},
		{name: "no scheme, userinfo before the path", in: "user:pw@host/p", want: "host/p"},
		{name: "userinfo hiding a URL", in: "x@http://user:pw@host/p", want: "http://host/p"},
		{name: "userinfo hiding a network-path reference", in: "x@//user:pw@host/p", want: "//host/p"},
		{name: "opaque", in: "http:user:pw@host", want: "host"},
		{name: "triple slash is a path", in: "http:///user:pw@host", want: "http:///user:pw@host"},
		{name: "IPv6 host", in: "http://u:p@[fd00::1]:80/p?q", want: "http://[fd00::1]:80/p", wantWithQry: "http://[fd00::1]:80/p?q"},
		{name: "fragment only", in: "#secret", want: ""},
		{name: "query only", in: "?token=s", want: "", wantWithQry: "?token=s"},
		{name: "'?' after '#' is the fragment's", in: "/p#a?b", want: "/p"},
		{name: "invalid escapes", in: "http://u:%zz@host/%zz?%zz", want: "http://host/%zz", wantWithQry: "http://host/%zz?%zz"},
		{name: "asterisk", in: "*", want: "*"},
		{name: "marker", in: Marker, want: Marker},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := URL(tt.in, false); got != tt.want {
				t.Errorf("URL(%q, false) = %q, want %q", tt.in, got, tt.want)
			}
			want := tt.wantWithQry
			if want == "" {
				want = tt.want
			}
			if got := URL(tt.in, true); got != want {
				t.Errorf("URL(%q, true) = %q, want %q", tt.in, got, want)
			}
		})
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		allow   []string
		wantErr string
	}{
		{name: "default", allow: DefaultHeaderAllowlist},
		{name: "empty", allow: nil},
		{name: "all", allow: []string{AllHeaders}},
		{name: "pseudo-header", allow: []string{":path"}},
		{name: "credential", allow: []string{"Content-Type", "authorization"}, wantErr: "the value of authorization is a credential: it is never kept"},
		{name: "cookie", allow: []string{"Cookie"}, wantErr: "the value of Cookie is a credential: it is never kept"},
		{name: "set-cookie", allow: []string{"SET-COOKIE"}, wantErr: "the value of SET-COOKIE is a credential: it is never kept"},
		{name: "proxy-authorization", allow: []string{"Proxy-Authorization"}, wantErr: "the value of Proxy-Authorization is a credential: it is never kept"},
		{name: "empty name", allow: []string{""}, wantErr: `"" is not an HTTP header name`},
		{name: "space", allow: []string{"X Key"}, wantErr: `"X Key" is not an HTTP header name`},
		{name: "colon", allow: []string{"Authorization:"}, wantErr: `"Authorization:" is not an HTTP header name`},
		{name: "glob", allow: []string{"X-*"}, wantErr: ""}, // '*' is a token character: a header named X-*
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Options{HeaderAllowlist: tt.allow})
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.wantErr {
				t.Errorf("New(%q) error = %q, want %q", tt.allow, got, tt.wantErr)
			}
		})
	}
}

func TestFlowHeaders(t *testing.T) {
	in := []v1alpha1.HTTPHeader{
		{Key: "Authorization", Value: "Bearer s3cr3t"},
		{Key: "proxy-authorization", Value: "Basic s3cr3t"},
		{Key: "Cookie", Value: "session=s3cr3t"},
		{Key: "set-cookie", Value: "id=s3cr3t"},
		{Key: "X-Api-Key", Value: "s3cr3t"},
		{Key: "content-type", Value: "application/json"},
		{Key: "User-Agent", Value: "curl/8.7.1"},
		{Key: "Referer", Value: "http://u:p@web/a?t=s3cr3t#f"},
		{Key: ":path", Value: "/a?t=s3cr3t"},
		{Key: "Host", Value: "u:p@web:80"},
		{Key: "X-Empty", Value: ""},
		{Key: "Authorization: Bearer s3cr3t", Value: ""},
		{Key: "", Value: "s3cr3t"},
		{Key: "X-Hubble", Value: Marker},
	}
	const r = Marker
	tests := []struct {
		name  string
		opts  Options
		wants []string // the values, in order
	}{
		{
			name:  "default",
			opts:  Options{HeaderAllowlist: DefaultHeaderAllowlist},
			wants: []string{r, r, r, r, r, "application/json", "curl/8.7.1", r, r, r, "", r, r, r},
		},
		{
			name:  "empty allow-list",
			opts:  Options{},
			wants: []string{r, r, r, r, r, r, r, r, r, r, "", r, r, r},
		},
		{
			name:  "URL headers allowed",
			opts:  Options{HeaderAllowlist: []string{"referer", ":PATH", "host"}},
			wants: []string{r, r, r, r, r, r, r, "http://web/a", "/a", "web:80", "", r, r, r},
		},
		{
			name:  "all, query strings kept",
			opts:  Options{HeaderAllowlist: []string{AllHeaders}, KeepQueryStrings: true},
			wants: []string{r, r, r, r, "s3cr3t", "application/json", "curl/8.7.1", "http://web/a?t=s3cr3t", "/a?t=s3cr3t", "web:80", "", r, r, r},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			red, err := New(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			f := &v1alpha1.Flow{L7: &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, HTTP: &v1alpha1.HTTP{
				Method: "GET", Code: 200, URL: "http://u:p@web/a?t=s3cr3t", Headers: append([]v1alpha1.HTTPHeader(nil), in...),
				// The same rules apply to response headers.
				ResponseHeaders: append([]v1alpha1.HTTPHeader(nil), in...),
			}}}
			red.Flow(f)
			// And to a gRPC call's.
			g := &v1alpha1.Flow{L7: &v1alpha1.Layer7{Type: v1alpha1.L7TypeGRPC, GRPC: &v1alpha1.GRPC{
				Service: "shop.v1.Orders", Method: "Get", ResponseHeaders: append([]v1alpha1.HTTPHeader(nil), in...),
			}}}
			red.Flow(g)
			h := f.L7.HTTP
			for _, hs := range [][]v1alpha1.HTTPHeader{h.Headers, h.ResponseHeaders, g.L7.GRPC.ResponseHeaders} {
				if len(hs) != len(in) {
					t.Fatalf("%d headers, want %d: %v", len(hs), len(in), hs)
				}
				for i, got := range hs {
					wantKey := in[i].Key
					if !isHeaderName(wantKey) {
						wantKey = Marker
					}
					if got.Key != wantKey || got.Value != tt.wants[i] {
						t.Errorf("header %d: %q: %q, want %q: %q", i, got.Key, got.Value, wantKey, tt.wants[i])
					}
				}
			}
			wantURL := "http://web/a"
			if tt.opts.KeepQueryStrings {
				wantURL += "?t=s3cr3t"
			}
			if h.URL != wantURL || h.Method != "GET" || h.Code != 200 {
				t.Errorf("url, method, code = %q, %q, %d; want %q, GET, 200", h.URL, h.Method, h.Code, wantURL)
			}
		})
	}
}

// TestFlowLeavesOthers: flows without an HTTP record are not touched, and
// neither are the other L7 records, which carry no credentials.
func TestFlowLeavesOthers(t *testing.T) {
	red, err := New(Options{HeaderAllowlist: DefaultHeaderAllowlist})
	if err != nil {
		t.Fatal(err)
	}
	flows := []*v1alpha1.Flow{
		nil,
		{},
		{L7: &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP}},
		{L7: &v1alpha1.Layer7{Type: v1alpha1.L7TypeDNS, DNS: &v1alpha1.DNS{Query: "user.pw.example.com.", IPs: []string{"10.0.0.1"}}}},
		{L7: &v1alpha1.Layer7{Type: v1alpha1.L7TypeGRPC, GRPC: &v1alpha1.GRPC{Service: "shop.Cart", Method: "Add", StatusCode: 5}}},
		{L7: &v1alpha1.Layer7{Type: v1alpha1.L7TypeKafka, Kafka: &v1alpha1.Kafka{APIKey: "produce", Topic: "orders"}}},
		{Source: &v1alpha1.Endpoint{Namespace: "payments", PodName: "api-1", Labels: map[string]string{"app": "api"}}},
	}
	for _, f := range flows {
		want := f.DeepCopy()
		red.Flow(f)
		if !reflect.DeepEqual(f, want) {
			t.Errorf("Flow changed %+v to %+v", want, f)
		}
	}
}

// FuzzRedactURL feeds URL hostile input. It must never panic; what it
// returns must hold no fragment, no query string unless asked to keep
// them, and, as net/url reads it, no userinfo; it keeps the query string
// it was asked to keep, is never longer than its input, and redacting it
// again changes nothing.
func FuzzRedactURL(f *testing.F) {
	for _, s := range []string{
		"", "/", "*", "/v1/orders?token=s#f", "http://user:pw@host:8080/p?q=1#f", "https://[fd00::1]:443/",
		"//u:p@h/p", "u:p@h:443", "x@http://u:p@h/", "x@//u:p@h/", "http:///u:p@h", "http:u:p@h",
		"HTTP://U@H", "a+b.c-d://u@h", "1http://u@h/", ":http://u@h", "http://u@h?x@y/#z@w",
		"http://u:%zz@h/%zz", "http://h/a@b", " http://u:p@h/", "http://u:p@h\\@x/", "@@@//@@/@",
		strings.Repeat("x@http://", 50) + "u:p@h/", "http://\x00u:p@h/", "http://u:p@h/\x7f?\xff",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, in string, keepQuery bool) {
		out := URL(in, keepQuery)
		if strings.Contains(out, "#") {
			t.Fatalf("URL(%q, %v) = %q holds a fragment", in, keepQuery, out)
		}
		if !keepQuery && strings.Contains(out, "?") {
			t.Fatalf("URL(%q, false) = %q holds a query string", in, out)
		}
		if u, err := url.Parse(out); err == nil && u.User != nil {
			t.Fatalf("URL(%q, %v) = %q holds userinfo %q", in, keepQuery, out, u.User)
		}
		if len(out) > len(in) {
			t.Fatalf("URL(%q, %v) = %q is longer than its input", in, keepQuery, out)
		}
		if again := URL(out, keepQuery); again != out {
			t.Fatalf("URL(%q, %v) = %q, and again %q", in, keepQuery, out, again)
		}
		if keepQuery {
			s, _, _ := strings.Cut(in, "#")
			if i := strings.IndexByte(s, '?'); i >= 0 && !strings.HasSuffix(out, s[i:]) {
				t.Fatalf("URL(%q, true) = %q lost the query string %q", in, out, s[i:])
			}
		}
	})
}

// FuzzCredentialToken: for a header name, the lower-case comparison the
// redactor makes agrees with strings.EqualFold's.
func FuzzCredentialToken(f *testing.F) {
	for _, s := range []string{"Authorization", "set-cookie", "COOKIE", "Cookies", "X-Token", ":path"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if !isHeaderName(name) {
			return
		}
		if got, want := isCredentialToken(appendLower(nil, name)), isCredential(name); got != want {
			t.Errorf("isCredentialToken(%q) = %v, isCredential %v", name, got, want)
		}
	})
}
