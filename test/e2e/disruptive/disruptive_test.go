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

package disruptive

import "testing"

// TestDisruptive runs the disruptive tests in this order, each as a
// subtest (go test -run 'TestDisruptive/DiskFull'); one that fails does
// not stop the others. Each leaves every component running, on its usual
// command line, when it ends, but not the store as it found it:
//
//   - KillDuringHeavyIngest stores 60,000 flows 20 minutes back, in the
//     namespace crash, out of the default window of the lists after it.
//   - ContinueTokenSurvivesRestarts restarts every component once per page
//     of the namespace shop: it comes before the tests that write flows
//     there (the informer's 200, the slow watcher's 12,000).
//   - WatchCutsOffASlowWatcherWhileOthersKeepUp floods the system with big
//     flows: it comes last.
func TestDisruptive(t *testing.T) {
	for _, tc := range []struct {
		name string
		test func(*testing.T)
	}{
		{"KillDuringHeavyIngest", testKillDuringHeavyIngest},
		{"DiskFull", testDiskFull},
		{"DeadAgentGivesPartialResultsWithWarning", testDeadAgentGivesPartialResultsWithWarning},
		{"FlowSummaryPartial", testFlowSummaryPartial},
		{"ContinueTokenSurvivesRestarts", testContinueTokenSurvivesRestarts},
		{"WatchInformerAcrossAnAgentKill", testWatchInformerAcrossAnAgentKill},
		{"WatchReplicasServeInterchangeableResourceVersions", testWatchReplicasServeInterchangeableResourceVersions},
		{"WatchInformerAcrossAnAPIServerUpdate", testWatchInformerAcrossAnAPIServerUpdate},
		{"WatchCutsOffASlowWatcherWhileOthersKeepUp", testWatchCutsOffASlowWatcherWhileOthersKeepUp},
	} {
		t.Run(tc.name, tc.test)
	}
}
