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

// Command images builds Flowscope's container images without a Docker
// daemon and without pulling anything (`make images`): for each binary of
// cmd/ it names, a static Go build on a base made here (CA certificates,
// /etc/passwd and /etc/group with a nonroot user 65532, /tmp), written as an
// OCI layout and a tarball under --out.
//
// The same sources give the same digests: the binaries are built with
// CGO_ENABLED=0, -trimpath, -buildvcs=false and an empty build ID, the
// layers' entries are sorted with one modification time
// (SOURCE_DATE_EPOCH, or 0), and the image's times are that time too. The
// CA bundle comes from the build machine (--ca-bundle), so two machines
// with different bundles give different base layers; the image names the
// bundle's digest in its history.
package main

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// images are the binaries that become images, and who runs them. A binary
// missing from cmd/ (kubectl-flows before it exists) is skipped.
var images = []spec{
	{name: "flowscope-apiserver", user: nonroot},
	{name: "flowscope-agent", user: 0},
	{name: "kubectl-flows", user: nonroot},
}

type options struct {
	root, out, version, repo, arch, caBundle string
	only                                     []string
	created                                  time.Time
}

// built is one image written.
type built struct {
	name, digest string
}

func main() {
	var o options
	var only string
	flag.StringVar(&o.root, "root", ".", "Root of the flowscope.io/flowscope module.")
	flag.StringVar(&o.out, "out", "_output/images", "Directory of the OCI layouts and tarballs.")
	flag.StringVar(&o.version, "version", "dev", "Version: the images' tag and what --version prints.")
	flag.StringVar(&o.repo, "repo", "ghcr.io/flowscope", "Repository the images are named in.")
	flag.StringVar(&o.arch, "arch", runtime.GOARCH, "GOARCH of the binaries and the images.")
	flag.StringVar(&o.caBundle, "ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "CA certificates for the base layer.")
	flag.StringVar(&only, "images", "", "Comma-separated images to build; empty builds every one whose cmd/ exists.")
	flag.Parse()
	created, err := sourceDateEpoch()
	if err != nil {
		fail(err)
	}
	o.created = created
	if only != "" {
		o.only = strings.Split(only, ",")
	}
	res, err := run(o)
	if err != nil {
		fail(err)
	}
	for _, b := range res {
		fmt.Printf("%s/%s:%s@%s\n", o.repo, b.name, o.version, b.digest)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "images: %v\n", err)
	os.Exit(1)
}

// sourceDateEpoch is the time of every file and of the images:
// SOURCE_DATE_EPOCH (reproducible-builds.org) when set, else the Unix epoch.
func sourceDateEpoch() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", s, err)
	}
	return time.Unix(n, 0).UTC(), nil
}

func run(o options) ([]built, error) {
	root, err := filepath.Abs(o.root)
	if err != nil {
		return nil, err
	}
	out := o.out
	if !filepath.IsAbs(out) {
		out = filepath.Join(root, out)
	}
	ca, err := os.ReadFile(o.caBundle)
	if err != nil {
		return nil, fmt.Errorf("read CA bundle: %w", err)
	}
	binDir := filepath.Join(out, ".bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return nil, err
	}
	var res []built
	for _, s := range selected(o.only) {
		if _, err := os.Stat(filepath.Join(root, "cmd", s.name)); err != nil {
			if len(o.only) > 0 {
				return nil, fmt.Errorf("image %s: no cmd/%s", s.name, s.name)
			}
			fmt.Fprintf(os.Stderr, "images: skipping %s: no cmd/%s\n", s.name, s.name)
			continue
		}
		bin := filepath.Join(binDir, s.name)
		if err := goBuild(root, s.name, bin, o.version, o.arch); err != nil {
			return nil, err
		}
		img, err := buildImage(s, bin, ca, o.version, o.arch, o.created, fmt.Sprintf("%x", sha256.Sum256(ca)))
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", s.name, err)
		}
		d, err := writeImage(out, s, img, o.repo, o.version)
		if err != nil {
			return nil, fmt.Errorf("write image %s: %w", s.name, err)
		}
		res = append(res, built{name: s.name, digest: d.String()})
	}
	return res, nil
}

func selected(only []string) []spec {
	if len(only) == 0 {
		return images
	}
	var res []spec
	for _, n := range only {
		found := false
		for _, s := range images {
			if s.name == n {
				res = append(res, s)
				found = true
			}
		}
		if !found {
			res = append(res, spec{name: n, user: nonroot})
		}
	}
	return res
}

// goBuild builds ./cmd/<name> statically, with nothing of the machine or the
// checkout in the binary but the version.
func goBuild(root, name, out, version, arch string) error {
	cmd := exec.Command("go", "build",
		"-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -buildid= -X flowscope.io/flowscope/internal/version.Version="+version,
		"-o", out, "./cmd/"+name)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOWORK=off", "GOFLAGS=")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/%s: %w", name, err)
	}
	return nil
}
