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

// Package otlp tests stored mode's OTLP output end to end: agents send the
// flows a policy with output OTLP selects to a real OpenTelemetry
// Collector (hack/tools/otelcol, started by hack/local-up.sh with
// OTEL_COLLECTOR=1), which writes them to a file; the suite compares that
// file with the Flow API, and stops the collector under load to hold the
// agents' loss accounting to what they sent.
package otlp

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"flowscope.io/flowscope/test/e2e/framework"
)

var sys *framework.System

// The agents' OTLP queue and retry time are small, so that a 20 s outage
// of the collector costs flows both ways: batches that fail after their
// retries, and flows that find the queue full meanwhile.
const agentArgs = "--otlp-queue-size=1000 --otlp-retry-max-elapsed=5s"

func TestMain(m *testing.M) {
	// Without the collector local-up would start the agents without
	// --otlp-endpoint: say so rather than fail on what is not there.
	_, file, _, _ := runtime.Caller(0)
	collector := filepath.Join(filepath.Dir(file), "../../../_output/tools/otelcol")
	if _, err := os.Stat(collector); err != nil {
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "e2e otlp: cannot run under CI: _output/tools/otelcol is missing (make tools)")
			os.Exit(1)
		}
		fmt.Println("SKIPPING the OTLP end-to-end suite: _output/tools/otelcol is missing: run `make tools`")
		os.Exit(0)
	}
	os.Exit(framework.Main(m, framework.Options{Env: []string{"OTEL_COLLECTOR=1", "AGENT_ARGS=" + agentArgs}}, &sys))
}
