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

package agent

import (
	"testing"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/hubble/parse"
)

type count int

func (c *count) Inc() { *c++ }

// TestReplaySourceBatches checks that the replay source hands its flows
// over in batches of replayBatch, the rest when told (the follower caught
// up, or a checkpoint), in the file's order, and counts every line once.
func TestReplaySourceBatches(t *testing.T) {
	var put []*v1alpha1.Flow
	var flows, notAFlow, malformed count
	src := &replaySource{
		opts:  parse.Options{NodeName: "node-a"},
		put:   func(f *v1alpha1.Flow) { put = append(put, f) },
		flows: &flows, notAFlow: &notAFlow, malformed: &malformed,
		batch: make([]*v1alpha1.Flow, 0, replayBatch),
	}
	line := []byte(`{"flow":{"time":"2026-03-02T09:15:04Z","verdict":"FORWARDED",` +
		`"source":{"namespace":"shop","pod_name":"web-6f9c7b8d4-x2k9p"},"traffic_direction":"EGRESS"}}`)
	for range replayBatch - 1 {
		src.line(line)
	}
	src.line([]byte(`{"lost_events":{"num_events_lost":"1"}}`))
	src.line([]byte(`{`))
	if len(put) != 0 {
		t.Fatalf("%d flows handed over before a batch was full", len(put))
	}
	src.line(line)
	if len(put) != replayBatch {
		t.Fatalf("%d flows handed over, want a batch of %d", len(put), replayBatch)
	}
	src.line(line)
	src.line(line)
	src.handOver()
	src.handOver()
	if len(put) != replayBatch+2 {
		t.Fatalf("%d flows handed over, want %d", len(put), replayBatch+2)
	}
	for i, f := range put {
		if f == nil || f.Source.PodName != "web-6f9c7b8d4-x2k9p" {
			t.Fatalf("flow %d: %+v", i, f)
		}
	}
	if flows != replayBatch+2 || notAFlow != 1 || malformed != 1 {
		t.Errorf("counted %d flows, %d not a flow, %d malformed; want %d, 1, 1", flows, notAFlow, malformed, replayBatch+2)
	}
}
