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

package ui

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

func testServer(t *testing.T) *server {
	t.Helper()
	s, err := newServer(Options{Config: &rest.Config{Host: "https://127.0.0.1:1"}, Address: "127.0.0.1"}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8001})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func serve(s *server, method, url, host string, mod func(*http.Request)) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, url, nil)
	r.Host = host
	if mod != nil {
		mod(r)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w
}

func TestServerGuards(t *testing.T) {
	s := testServer(t)
	good := "127.0.0.1:8001"
	withCookie := func(v string) func(*http.Request) {
		return func(r *http.Request) { r.AddCookie(&http.Cookie{Name: s.cookie, Value: v}) }
	}
	tests := []struct {
		name   string
		method string
		url    string
		host   string
		mod    func(*http.Request)
		want   int
	}{
		{"token hands over a cookie", "GET", "/?token=" + s.token, good, nil, http.StatusSeeOther},
		{"wrong token", "GET", "/?token=x" + s.token, good, nil, http.StatusForbidden},
		{"no cookie", "GET", "/", good, nil, http.StatusUnauthorized},
		{"no cookie for the API", "GET", "/api/namespaces", good, nil, http.StatusUnauthorized},
		{"wrong cookie", "GET", "/", good, withCookie("nope"), http.StatusUnauthorized},
		{"cookie", "GET", "/", good, withCookie(s.token), http.StatusOK},
		{"localhost", "GET", "/", "localhost:8001", withCookie(s.token), http.StatusOK},
		{"rebound name", "GET", "/", "evil.example:8001", withCookie(s.token), http.StatusForbidden},
		{"rebound name with a token", "GET", "/?token=" + s.token, "evil.example:8001", nil, http.StatusForbidden},
		{"other port", "GET", "/", "127.0.0.1:8002", withCookie(s.token), http.StatusForbidden},
		{"POST", "POST", "/api/flows", good, withCookie(s.token), http.StatusMethodNotAllowed},
		{"cross-site fetch", "GET", "/api/flows", good, func(r *http.Request) {
			withCookie(s.token)(r)
			r.Header.Set("Sec-Fetch-Site", "cross-site")
		}, http.StatusForbidden},
		{"same-origin fetch of a bad query", "GET", "/api/flows?namespace=Not_A_Namespace", good, func(r *http.Request) {
			withCookie(s.token)(r)
			r.Header.Set("Sec-Fetch-Site", "same-origin")
		}, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := serve(s, tt.method, tt.url, tt.host, tt.mod)
			if w.Code != tt.want {
				t.Fatalf("%s %s (Host %s): got %d, want %d: %s", tt.method, tt.url, tt.host, w.Code, tt.want, w.Body)
			}
		})
	}
}

func TestTokenCookie(t *testing.T) {
	s := testServer(t)
	w := serve(s, "GET", "/?token="+s.token, "127.0.0.1:8001", nil)
	c := w.Result().Cookies()
	if len(c) != 1 || c[0].Value != s.token || !c[0].HttpOnly || c[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookie: %+v", c)
	}
	if loc := w.Header().Get("Location"); loc != "/" {
		t.Fatalf("redirect to %q, want / (the token out of the address bar)", loc)
	}
	if got := w.Header().Get("Referrer-Policy"); got != "no-referrer" {
		t.Fatalf("Referrer-Policy %q", got)
	}
	if !strings.HasPrefix(s.startURL(), "http://127.0.0.1:8001/?token=") || len(s.token) != 64 {
		t.Fatalf("start URL %s", s.startURL())
	}
}

func TestWithoutTimeBounds(t *testing.T) {
	for in, want := range map[string]string{
		"":                              "",
		"since=5m":                      "",
		"verdict=Dropped,since=5m":      "verdict=Dropped",
		"until=1m,l4.protocol=TCP":      "l4.protocol=TCP",
		"source.podName=a\\,b,since=1h": "source.podName=a\\,b",
	} {
		if got := withoutTimeBounds(in); got != want {
			t.Errorf("withoutTimeBounds(%q) = %q, want %q", in, got, want)
		}
	}
}

// syncBuffer is an io.Writer that Run and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRun: Run listens on a free loopback port, prints the URL with its
// token, serves the page to whoever has it, and stops with its context.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Options{Config: &rest.Config{Host: "https://127.0.0.1:1"}, Out: out}) }()
	var url string
	for deadline := time.Now().Add(10 * time.Second); url == ""; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no URL printed: %q", out.String())
		}
		for _, f := range strings.Fields(out.String()) {
			if strings.HasPrefix(f, "http://127.0.0.1:") {
				url = f
			}
		}
	}
	jar, _ := cookiejar.New(nil)
	resp, err := (&http.Client{Jar: jar}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `<div id="app">`) || resp.Request.URL.RawQuery != "" {
		t.Fatalf("GET %s: %d at %s: %.200s", url, resp.StatusCode, resp.Request.URL, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
