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

// Package ui holds the browser tests of the web UI of kubectl flows ui:
// the plugin serves the UI with a user's kubeconfig against a local system
// fed by replayed flows, and Debian's headless chromium drives it through
// chromedp.
package ui

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"flowscope.io/flowscope/test/e2e/framework"
)

var sys *framework.System

// chromium is the browser the tests drive.
var chromium string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	for _, b := range []string{"chromium", "chromium-browser", "headless_shell", "google-chrome"} {
		if p, err := exec.LookPath(b); err == nil {
			chromium = p
			break
		}
	}
	if chromium == "" && !testing.Short() {
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "e2e ui: cannot run under CI: no chromium on PATH (hack/install-chromium.sh, run by make tools)")
			return 1
		}
		fmt.Println("SKIPPING the browser tests: no chromium on PATH: run hack/install-chromium.sh (make tools does)")
		return 0
	}
	return framework.Main(m, framework.Options{}, &sys)
}
