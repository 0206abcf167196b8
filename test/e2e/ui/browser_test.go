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
	"bufio"
	"bytes"
	"context"
	"image"
	"image/png"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// startUI runs `kubectl-flows ui` with user's kubeconfig ("" is admin) on
// a free loopback port and returns the URL it printed, token included.
func startUI(t *testing.T, user string) string {
	t.Helper()
	bin := os.Getenv("FLOWSCOPE_UI_BIN")
	if bin == "" {
		bin = filepath.Join(sys.Root, "_output/bin/kubectl-flows")
	}
	kc := filepath.Join(sys.Out, "kubeconfig")
	if user != "" {
		kc += "-" + user
	}
	cmd := exec.Command(bin, "ui", "--kubeconfig", kc, "--address", "127.0.0.1", "--port", strconv.Itoa(freePort(t)))
	// No display: the plugin must not try to open a browser of its own.
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "DISPLAY=") && !strings.HasPrefix(e, "WAYLAND_DISPLAY=") && !strings.HasPrefix(e, "BROWSER=") {
			env = append(env, e)
		}
	}
	cmd.Env = env
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s ui: %v", bin, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if i := strings.Index(sc.Text(), "http://"); i >= 0 {
				select {
				case urls <- strings.Fields(sc.Text()[i:])[0]:
				default:
				}
			}
		}
	}()
	select {
	case u := <-urls:
		return u
	case <-time.After(30 * time.Second):
		t.Fatalf("%s ui printed no URL within 30s", bin)
		return ""
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// response is a body the browser received: a whole response, or one
// message of an event stream.
type response struct {
	URL  string
	Body []byte
}

// browser is a headless chromium tab that records every response body.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu      sync.Mutex
	urls    map[network.RequestID]string
	bodies  []response
	pending sync.WaitGroup
}

func newBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.WindowSize(1440, 900),
		chromedp.Flag("force-device-scale-factor", "1"))
	opts = append(opts, extra...)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx, urls: map[network.RequestID]string{}}
	finished := make(chan network.RequestID, 1024)
	if err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *network.EventResponseReceived:
			b.mu.Lock()
			b.urls[ev.RequestID] = ev.Response.URL
			b.mu.Unlock()
		case *network.EventEventSourceMessageReceived:
			b.mu.Lock()
			b.bodies = append(b.bodies, response{URL: b.urls[ev.RequestID] + "#" + ev.EventName, Body: []byte(ev.Data)})
			b.mu.Unlock()
		case *network.EventLoadingFinished:
			b.pending.Add(1)
			select {
			case finished <- ev.RequestID:
			default:
				b.pending.Done()
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	go func() {
		for id := range finished {
			// Not in the listener: a command there would wait for
			// the goroutine that runs it.
			res, err := chromedp.Call(ctx, network.GetResponseBody, network.GetResponseBodyParams{RequestID: id})
			if err == nil {
				b.mu.Lock()
				b.bodies = append(b.bodies, response{URL: b.urls[id], Body: res.Body})
				b.mu.Unlock()
			}
			b.pending.Done()
		}
	}()
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	return b
}

// do runs actions, failing the test on an error.
func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatal(err)
	}
}

// eval evaluates a JavaScript expression into T.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// poll waits until a JavaScript expression is truthy and returns it.
func poll[T any](b *browser, timeout time.Duration, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Poll[T](expr, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(50*time.Millisecond)))
	if err != nil {
		b.t.Fatalf("waiting %s for %s: %v", timeout, expr, err)
	}
	return v
}

// responses returns what the browser received so far, once the bodies of
// finished requests are read.
func (b *browser) responses() []response {
	b.pending.Wait()
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]response(nil), b.bodies...)
}

// artifactDir is where screenshots go; CI keeps _output.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(sys.Root, "_output", "e2e-artifacts", "ui")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// screenshot saves the viewport as <test>-<name>.png in the artifact
// directory, and fails if it is blank: a page that rendered nothing has a
// handful of colours, a map or a table has many.
func (b *browser) screenshot(name string) string {
	b.t.Helper()
	raw, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatal(err)
	}
	path := filepath.Join(artifactDir(b.t), strings.ReplaceAll(b.t.Name(), "/", "_")+"-"+name+".png")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		b.t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", path, err)
	}
	if n := distinctColours(img); n < 32 {
		b.t.Fatalf("screenshot %s looks blank: %d distinct colours", path, n)
	} else {
		b.t.Logf("screenshot %s: %dx%d, %d distinct colours", path, img.Bounds().Dx(), img.Bounds().Dy(), n)
	}
	return path
}

func distinctColours(img image.Image) int {
	seen := map[uint32]bool{}
	r := img.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y += 2 {
		for x := r.Min.X; x < r.Max.X; x += 2 {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			seen[(cr>>8)<<16|(cg>>8)<<8|cb>>8] = true
		}
	}
	return len(seen)
}

// open loads the UI's start URL and waits until the app knows the
// namespaces it may show, or says it knows none.
func (b *browser) open(url string) {
	b.t.Helper()
	b.do(chromedp.Navigate(url))
	poll[bool](b, 20*time.Second, `!!document.querySelector('#namespace') && (document.querySelector('#namespace').options.length > 0 || !!document.querySelector('.error'))`)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
