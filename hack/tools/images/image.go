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
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// binDir is where a binary lies in its image.
const binDir = "usr/local/bin"

// spec says what one image holds.
type spec struct {
	name string // the binary and the image, e.g. flowscope-agent
	// user runs the entrypoint unless the pod says otherwise: nonroot
	// where the binary allows it; the agent's eBPF needs uid 0 with
	// capabilities (see the chart's securityContext), since Kubernetes
	// grants no ambient capabilities to a non-root process.
	user int
}

// buildImage assembles an OCI image of the binary at bin on the base: two
// layers (base, binary), every time set to created.
func buildImage(s spec, bin string, caBundle []byte, version string, arch string, created time.Time, caDigest string) (v1.Image, error) {
	base, err := tarLayer(baseFiles(caBundle), created)
	if err != nil {
		return nil, fmt.Errorf("base layer: %w", err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	app, err := tarLayer([]file{{name: binDir + "/" + s.name, mode: 0o755, data: data}}, created)
	if err != nil {
		return nil, fmt.Errorf("binary layer: %w", err)
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	t := v1.Time{Time: created}
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{
			Created: t, CreatedBy: "flowscope base: CA certificates (sha256:" + caDigest + "), users root and nonroot (65532), /tmp"}},
		mutate.Addendum{Layer: app, MediaType: types.OCILayer, History: v1.History{
			Created: t, CreatedBy: "go build -trimpath ./cmd/" + s.name}},
	)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = arch
	cf.Created = t
	user := strconv.Itoa(s.user)
	cf.Config = v1.Config{
		Entrypoint: []string{"/" + binDir + "/" + s.name},
		User:       user + ":" + user,
		WorkingDir: "/",
		Env: []string{
			"PATH=/usr/local/bin:/usr/bin:/bin",
			"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
		},
		Labels: map[string]string{
			"org.opencontainers.image.title":    s.name,
			"org.opencontainers.image.version":  version,
			"org.opencontainers.image.source":   "https://github.com/flowscope/flowscope",
			"org.opencontainers.image.licenses": "Apache-2.0",
		},
	}
	return mutate.ConfigFile(img, cf)
}

// writeImage writes img under dir as an OCI layout, <name>/ (for crane,
// skopeo, or `ctr images import --oci`), and a tarball, <name>.tar (for
// `docker load`, `kind load image-archive` or `ctr images import`), both
// naming repo:version. Earlier output of the name is replaced.
func writeImage(dir string, s spec, img v1.Image, repo, version string) (v1.Hash, error) {
	ref, err := name.NewTag(repo + "/" + s.name + ":" + version)
	if err != nil {
		return v1.Hash{}, err
	}
	lp := filepath.Join(dir, s.name)
	if err := os.RemoveAll(lp); err != nil {
		return v1.Hash{}, err
	}
	p, err := layout.Write(lp, empty.Index)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": version,
		"io.containerd.image.name":          ref.Name(),
	})); err != nil {
		return v1.Hash{}, err
	}
	if err := tarball.WriteToFile(filepath.Join(dir, s.name+".tar"), ref, img); err != nil {
		return v1.Hash{}, err
	}
	return img.Digest()
}
