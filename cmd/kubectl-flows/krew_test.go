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
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The part of krew's Plugin (v1alpha2) the manifest must get right.
type krewPlugin struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version          string `json:"version"`
		Homepage         string `json:"homepage"`
		ShortDescription string `json:"shortDescription"`
		Platforms        []struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			URI    string `json:"uri"`
			SHA256 string `json:"sha256"`
			Bin    string `json:"bin"`
			Files  []struct {
				From string `json:"from"`
				To   string `json:"to"`
			} `json:"files"`
		} `json:"platforms"`
	} `json:"spec"`
}

// TestKrewManifest reads artifacts/krew/flows.yaml with a tag filled in, as
// krew-release-bot would, and checks what krew validates and what the
// plugin's name implies.
func TestKrewManifest(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "artifacts", "krew", "flows.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const tag = "v1.2.3"
	var p krewPlugin
	if err := yaml.Unmarshal([]byte(strings.ReplaceAll(string(raw), "{{ .TagName }}", tag)), &p); err != nil {
		t.Fatal(err)
	}
	if p.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || p.Kind != "Plugin" {
		t.Errorf("apiVersion %q kind %q", p.APIVersion, p.Kind)
	}
	// kubectl runs kubectl-flows for "kubectl flows": krew's name is the
	// binary's without its prefix.
	if p.Metadata.Name != "flows" || p.Spec.Version != tag || p.Spec.ShortDescription == "" || !strings.HasPrefix(p.Spec.Homepage, "https://") {
		t.Errorf("metadata/spec: %+v", p)
	}
	var platforms []string
	sha := regexp.MustCompile(`^[0-9a-f]{64}$`)
	for _, pl := range p.Spec.Platforms {
		goos, arch := pl.Selector.MatchLabels["os"], pl.Selector.MatchLabels["arch"]
		platforms = append(platforms, goos+"/"+arch)
		if want := "/" + tag + "/kubectl-flows_" + tag + "_" + goos + "_" + arch + ".tar.gz"; !strings.HasSuffix(pl.URI, want) || !strings.HasPrefix(pl.URI, "https://") {
			t.Errorf("%s/%s: uri %q does not end in %q", goos, arch, pl.URI, want)
		}
		if !sha.MatchString(pl.SHA256) {
			t.Errorf("%s/%s: sha256 %q", goos, arch, pl.SHA256)
		}
		if pl.Bin != "kubectl-flows" || len(pl.Files) == 0 || pl.Files[0].From != "kubectl-flows" {
			t.Errorf("%s/%s: bin %q files %+v", goos, arch, pl.Bin, pl.Files)
		}
	}
	slices.Sort(platforms)
	if want := []string{"darwin/amd64", "darwin/arm64", "linux/amd64", "linux/arm64"}; !slices.Equal(platforms, want) {
		t.Errorf("platforms %v, want %v", platforms, want)
	}
}
