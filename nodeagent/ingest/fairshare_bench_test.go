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

package ingest_test

import (
	"testing"
	"time"

	"flowscope.io/flowscope/internal/flowtest"
	"flowscope.io/flowscope/nodeagent/ingest"
	"flowscope.io/flowscope/nodeagent/ingest/ingesttest"
)

// BenchmarkIngestFairShare measures the normal path's cost of the fair
// shares: the agent's ingest (pipeline, store on disk, hub) taking the
// demo application's flows as fast as it can, with the shares off and on
// (the chart's --max-store-bytes of 10Gi, so far from its pressure; the
// disk measured every second as in the agent). cpu-ns/flow is the whole
// process's CPU time per flow. On a shared machine run the two cases
// alternately, a process each:
//
//	go test -c -o /tmp/ingest.test ./nodeagent/ingest
//	for i in 1 2 3 4 5; do for s in off on; do
//	  /tmp/ingest.test -test.run '^$' -test.bench "IngestFairShare/shares=$s\$" -test.benchtime 200000x
//	done; done | tee /tmp/shares.txt; benchstat -col /shares /tmp/shares.txt
func BenchmarkIngestFairShare(b *testing.B) {
	pool := flowtest.RealisticFlows(b, 1<<14)
	for _, on := range []bool{false, true} {
		name := "shares=off"
		if on {
			name = "shares=on"
		}
		b.Run(name, func(b *testing.B) {
			st := ingesttest.OpenStore(b, b.TempDir())
			opts := ingest.Options{ProgressInterval: 100 * time.Millisecond}
			if on {
				opts.FairShare = ingest.NewFairShare(ingest.FairShareOptions{MaxBytes: 10 << 30, Retention: time.Hour, DiskBytes: st.DiskBytes})
			}
			p, stop := ingesttest.Run(b, st, opts)
			defer stop()
			ingesttest.FeedBenchmark(b, p, pool)
		})
	}
}
