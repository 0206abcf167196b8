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

package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// TestImagesReproducible builds the image of flowscope-apiserver twice from
// one snapshot of the sources (HEAD, so that edits made meanwhile in the
// working tree cannot tell the builds apart) into two directories, and
// wants the same digest; then it takes the binary out of the image's layer
// and runs it with --version, and reads the base's users.
func TestImagesReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds flowscope-apiserver twice; skipped in -short mode")
	}
	repo, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	archive := exec.Command("sh", "-c", `git -C "$1" archive HEAD | tar -x -C "$2"`, "sh", repo, src)
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("snapshot of HEAD: %v\n%s", err, out)
	}
	const version = "v0.0.0-reproducible"
	var digests []string
	var outs []string
	for i := range 2 {
		out := t.TempDir()
		start := time.Now()
		res, err := run(options{root: src, out: out, version: version, repo: "ghcr.io/flowscope", arch: runtime.GOARCH,
			caBundle: "/etc/ssl/certs/ca-certificates.crt", only: []string{"flowscope-apiserver"}, created: time.Unix(0, 0).UTC()})
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 1 {
			t.Fatalf("built %v, want flowscope-apiserver", res)
		}
		t.Logf("build %d: %s in %s", i+1, res[0].digest, time.Since(start).Round(time.Second))
		digests = append(digests, res[0].digest)
		outs = append(outs, out)
	}
	if digests[0] != digests[1] {
		t.Fatalf("same sources, different digests: %s and %s", digests[0], digests[1])
	}

	idx, err := layout.ImageIndexFromPath(filepath.Join(outs[0], "flowscope-apiserver"))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Digest.String() != digests[0] {
		t.Fatalf("OCI layout index: %+v, want the one image %s", im.Manifests, digests[0])
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	// Digests, sizes and diff IDs agree with the blobs, as a registry or
	// a runtime checks them.
	if err := validate.Image(img); err != nil {
		t.Fatalf("the image does not validate: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || cf.Config.Entrypoint[0] != "/usr/local/bin/flowscope-apiserver" || !cf.Created.Time.Equal(time.Unix(0, 0)) {
		t.Errorf("config: user %q, entrypoint %v, created %v", cf.Config.User, cf.Config.Entrypoint, cf.Created)
	}

	files := map[string][]byte{}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		var prev string
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Name < prev {
				t.Errorf("layer entries not sorted: %s after %s", h.Name, prev)
			}
			prev = h.Name
			if !h.ModTime.Equal(time.Unix(0, 0)) {
				t.Errorf("%s: mtime %v, want the epoch", h.Name, h.ModTime)
			}
			if h.Typeflag == tar.TypeReg {
				data, err := io.ReadAll(tr)
				if err != nil {
					t.Fatal(err)
				}
				files[h.Name] = data
			}
		}
		_ = rc.Close()
	}
	if !bytes.Contains(files["etc/passwd"], []byte("nonroot:x:65532:65532:")) {
		t.Errorf("etc/passwd: %q", files["etc/passwd"])
	}
	if len(files["etc/ssl/certs/ca-certificates.crt"]) == 0 {
		t.Error("no CA certificates in the base")
	}
	bin := filepath.Join(t.TempDir(), "flowscope-apiserver")
	if err := os.WriteFile(bin, files["usr/local/bin/flowscope-apiserver"], 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version (from the image): %v\n%s", bin, err, out)
	}
	if got, want := strings.TrimSpace(string(out)), "flowscope-apiserver "+version; got != want {
		t.Errorf("--version of the image's binary: %q, want %q", got, want)
	}
}
