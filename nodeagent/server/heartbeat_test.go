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

package server

import (
	"testing"
	"time"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/flowfilter"
)

// TestFeedHeartbeat: a server that asks for a heartbeat gets watermarks
// it did not ask for at most that often, while its asks are answered at
// once; a heartbeat of 1 ms gives back every watermark the agent makes.
func TestFeedHeartbeat(t *testing.T) {
	a := startAgent(t, t.TempDir(), 1024) // a watermark every 20 ms
	s := a.openFeed(t, &feedStream{})
	s.subscribe(1, flowfilter.Filter{}, 0)
	s.waitCaughtUp(t, 1)
	progress := func() int {
		n := 0
		for _, e := range s.snapshot() {
			if e.Type == agentwire.Progress {
				n++
			}
		}
		return n
	}
	ask := func() {
		rv := uint64(time.Now().UnixMicro())
		s.reqs <- &agentwire.FeedRequest{Progress: rv}
		s.waitProgress(t, rv)
	}
	// applied sends req and asks for a watermark: requests are served in
	// order, so req is in force once the answer came.
	applied := func(req *agentwire.FeedRequest) {
		s.reqs <- req
		ask()
	}

	applied(&agentwire.FeedRequest{Heartbeat: agentwire.MaxHeartbeat})
	before := progress()
	for range 3 {
		ask()
	}
	time.Sleep(300 * time.Millisecond) // 15 of the agent's watermarks
	if got := progress() - before; got != 3 {
		t.Errorf("with an hour's heartbeat: %d watermarks, want the 3 asked for", got)
	}

	const beat = 400 * time.Millisecond
	applied(&agentwire.FeedRequest{Heartbeat: beat})
	start, before := time.Now(), progress()
	time.Sleep(3 * beat)
	// Each is at least beat after the one before, by the agent's clock.
	if got, most := progress()-before, int(time.Since(start)/beat)+1; got > most {
		t.Errorf("with a heartbeat of %v: %d watermarks in %v, want at most %d", beat, got, time.Since(start), most)
	}

	applied(&agentwire.FeedRequest{Heartbeat: time.Millisecond})
	before = progress()
	waitFor(t, "the agent's every watermark again", func() bool { return progress()-before >= 20 })
}
