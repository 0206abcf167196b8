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
	"compress/gzip"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// nonroot is the user and group the images offer to run as: distroless's
// number, which Kubernetes manifests commonly name (runAsUser: 65532).
const nonroot = 65532

// file is one entry of a layer: a directory when data is nil and dir is set.
type file struct {
	name     string // relative, no leading slash
	dir      bool
	mode     int64
	uid, gid int
	data     []byte
}

// tarLayer writes files as a gzip'ed OCI layer whose bytes depend on the
// files alone: entries sorted by name, every parent directory present, one
// modification time, no user or group names, no access or change times (so
// the USTAR format, no PAX records that carry them). The same files give the
// same digest on every machine and run.
func tarLayer(files []file, mtime time.Time) (v1.Layer, error) {
	byName := map[string]file{}
	for _, f := range files {
		f.name = strings.TrimPrefix(path.Clean(f.name), "/")
		byName[f.name] = f
		// Parents a layer leaves out would be created by the runtime with
		// its own modes; declare them.
		for d := path.Dir(f.name); d != "." && d != "/"; d = path.Dir(d) {
			if _, ok := byName[d]; !ok {
				byName[d] = file{name: d, dir: true, mode: 0o755}
			}
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		f := byName[n]
		h := &tar.Header{
			Name:    f.name,
			Mode:    f.mode,
			Uid:     f.uid,
			Gid:     f.gid,
			ModTime: mtime,
			Format:  tar.FormatUSTAR,
		}
		if f.dir {
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("write header of %s: %w", f.name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close layer: %w", err)
	}
	data := buf.Bytes()
	// go-containerregistry compresses with compress/gzip, whose header
	// carries no time or name when none is set: deterministic.
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(gzip.BestCompression))
}

// baseFiles is the base every image shares, built here since no image can be
// pulled: the CA certificates for the TLS a binary dials (the Kubernetes API,
// an OTLP collector), users root and nonroot with their groups and homes,
// and a /tmp for Go's os.TempDir.
func baseFiles(caBundle []byte) []file {
	return []file{
		{name: "etc/passwd", mode: 0o644, data: []byte(
			"root:x:0:0:root:/root:/sbin/nologin\n" +
				fmt.Sprintf("nonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", nonroot, nonroot))},
		{name: "etc/group", mode: 0o644, data: []byte(
			"root:x:0:\n" +
				fmt.Sprintf("nonroot:x:%d:\n", nonroot))},
		{name: "etc/nsswitch.conf", mode: 0o644, data: []byte("hosts: files dns\n")},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: caBundle},
		{name: "home/nonroot", dir: true, mode: 0o700, uid: nonroot, gid: nonroot},
		{name: "root", dir: true, mode: 0o700},
		{name: "tmp", dir: true, mode: 0o1777},
	}
}
