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

// Package dashboards tests the Grafana dashboards of artifacts/dashboards
// against a real Prometheus (Debian's, started by hack/local-up.sh with
// PROMETHEUS=1) scraping the agents of the local system while its demo
// pods exchange real traffic (TCP, UDP, ICMP, HTTP, gRPC, DNS, Kafka), plus
// replayed flows for what the demo lacks (the world outside the cluster,
// drops of DNS). Every panel's PromQL, with the dashboard's variables
// substituted, must parse (promtool) and return data, but for the panels
// listed in exempt, each with its reason.
//
// Only one system with demo pods may exist per host: run it under
// `flock /tmp/flowscope-demopods.lock go test ./test/e2e/dashboards/`.
package dashboards

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"flowscope.io/flowscope/test/e2e/framework"
)

var sys *framework.System

func TestMain(m *testing.M) {
	for _, bin := range []string{"prometheus", "promtool"} {
		if _, err := exec.LookPath(bin); err != nil {
			msg := bin + " is missing: run hack/install-prometheus.sh (make tools)"
			if os.Getenv("CI") == "true" {
				fmt.Fprintln(os.Stderr, "e2e: cannot run under CI: "+msg)
				os.Exit(1)
			}
			fmt.Println("SKIPPING the dashboards suite: " + msg)
			os.Exit(0)
		}
	}
	os.Exit(framework.Main(m, framework.Options{
		DemoPods: true, Capture: "all",
		Env: []string{"PROMETHEUS=1", "CAPTURE_REPORT_INTERVAL=2s", "CAPTURE_IDLE_TIMEOUT=3s"},
	}, &sys))
}
