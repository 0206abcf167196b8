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

// Package ui serves the Flowscope web UI of `kubectl flows ui`: the
// embedded single-page app (built from web/ui, committed in dist) and a
// small JSON and Server-Sent Events API in front of kube-apiserver.
//
// Every API request is made with the user's own rest.Config, so
// kube-apiserver's RBAC decides what the browser sees, as it does for
// kubectl; the server holds no identity of its own. Because the server
// lends the user's credentials to whoever can reach it, it listens on
// loopback, answers only to its own Host (against DNS rebinding), and asks
// for a random per-run token, handed over in the printed URL and kept in a
// SameSite=Strict cookie (against other local users and cross-site
// requests).
package ui

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"flowscope.io/flowscope/generated/clientset/versioned"
)

//go:embed dist
var dist embed.FS

// Options configure Run.
type Options struct {
	// Config is the user's client configuration (their kubeconfig): every
	// request to kube-apiserver is made with it.
	Config *rest.Config
	// Address is the address to listen on; 127.0.0.1 when empty.
	Address string
	// Port is the port to listen on; 0 picks a free one.
	Port int
	// OpenBrowser opens the URL with $BROWSER, open on macOS, or
	// xdg-open when a display is there to show it.
	OpenBrowser bool
	// Out receives the URL to open; os.Stdout when nil.
	Out io.Writer
	// Namespace is offered first, and is the one namespace checked when
	// the user may not list namespaces (kubectl's -n or the context's
	// namespace); optional.
	Namespace string
}

// Run serves the UI until ctx is done.
func Run(ctx context.Context, o Options) error {
	if o.Config == nil {
		return errors.New("ui: no client configuration")
	}
	if o.Address == "" {
		o.Address = "127.0.0.1"
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(o.Address, strconv.Itoa(o.Port)))
	if err != nil {
		return fmt.Errorf("listen on %s:%d: %w", o.Address, o.Port, err)
	}
	srv, err := newServer(o, ln.Addr().(*net.TCPAddr))
	if err != nil {
		_ = ln.Close()
		return err
	}
	if ip := net.ParseIP(o.Address); ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(o.Out, "Warning: %s is not a loopback address: anyone who has the URL below can read flows with your credentials\n", o.Address)
	}
	url := srv.startURL()
	fmt.Fprintf(o.Out, "Serving the Flowscope UI at %s\nPress Ctrl-C to stop.\n", url)
	if o.OpenBrowser {
		openBrowser(url, o.Out)
	}
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		// Event streams end with their requests' context, which is ctx.
		_ = hs.Shutdown(shutdownCtx)
		return nil
	}
}

// server is the UI's HTTP handler.
type server struct {
	opts   Options
	flows  versioned.Interface
	kube   kubernetes.Interface
	token  string
	cookie string
	hosts  map[string]bool // Host headers the server answers to
	base   string          // http://host:port
	assets http.Handler
	mux    *http.ServeMux
}

func newServer(o Options, addr *net.TCPAddr) (*server, error) {
	// The UI's requests are the user's: keep kubectl's rate limits
	// out of the way of a live table but do not hide throttling.
	cfg := rest.CopyConfig(o.Config)
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 50, 100
	}
	cfg.UserAgent = "kubectl-flows-ui"
	flows, err := versioned.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("flows client: %w", err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		return nil, err
	}
	port := strconv.Itoa(addr.Port)
	host := o.Address
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	s := &server{
		opts:  o,
		flows: flows,
		kube:  kube,
		token: hex.EncodeToString(raw),
		// Cookies are not kept apart by port: a name per port keeps
		// two UIs on one host from overwriting each other's token.
		cookie: "flowscope-ui-" + port,
		hosts: map[string]bool{
			net.JoinHostPort(host, port):        true,
			net.JoinHostPort("localhost", port): true,
			net.JoinHostPort("127.0.0.1", port): true,
			net.JoinHostPort("::1", port):       true,
		},
		base:   "http://" + net.JoinHostPort(host, port),
		assets: http.FileServerFS(sub),
		mux:    http.NewServeMux(),
	}
	s.routes()
	return s, nil
}

// startURL is the URL that hands the browser its token.
func (s *server) startURL() string { return s.base + "/?token=" + s.token }

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// The token travels in the first URL: never in a Referer.
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	// A page of another site that resolves its own name to 127.0.0.1
	// (DNS rebinding) sends its own name as Host.
	if !s.hosts[r.Host] {
		http.Error(w, "unexpected Host header", http.StatusForbidden)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "read-only", http.StatusMethodNotAllowed)
		return
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		http.Error(w, "cross-site request", http.StatusForbidden)
		return
	}
	if tok := r.URL.Query().Get("token"); tok != "" && r.URL.Path == "/" {
		if !s.validToken(tok) {
			http.Error(w, "wrong token: use the URL kubectl flows ui printed", http.StatusForbidden)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: s.cookie, Value: s.token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		// Drop the token from the address bar and the history.
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	c, err := r.Cookie(s.cookie)
	if err != nil || !s.validToken(c.Value) {
		http.Error(w, "no session: open the URL kubectl flows ui printed", http.StatusUnauthorized)
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *server) validToken(t string) bool {
	return subtle.ConstantTimeCompare([]byte(t), []byte(s.token)) == 1
}

func (s *server) routes() {
	s.mux.HandleFunc("GET /api/whoami", s.whoami)
	s.mux.HandleFunc("GET /api/namespaces", s.namespaces)
	s.mux.HandleFunc("GET /api/flows", s.listFlows)
	s.mux.HandleFunc("GET /api/watch", s.watchFlows)
	s.mux.HandleFunc("GET /api/map", s.serviceMap)
	s.mux.Handle("GET /", s.assets)
}

// openBrowser opens url where a browser can be shown, and says so when it
// cannot.
func openBrowser(url string, out io.Writer) {
	name := "xdg-open"
	switch {
	case os.Getenv("BROWSER") != "":
		name = os.Getenv("BROWSER")
	case runtime.GOOS == "darwin":
		// macOS always has a display and its own opener.
		name = "open"
	case os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "":
		return
	}
	cmd := exec.Command(name, url)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(out, "Could not open a browser (%v): open the URL above.\n", err)
		return
	}
	go func() { _ = cmd.Wait() }()
}
