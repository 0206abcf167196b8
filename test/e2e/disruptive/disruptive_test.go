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
		{"ContinueTokenSurvivesRestarts", testContinueTokenSurvivesRestarts},
		{"WatchInformerAcrossAnAgentKill", testWatchInformerAcrossAnAgentKill},
		{"WatchReplicasServeInterchangeableResourceVersions", testWatchReplicasServeInterchangeableResourceVersions},
		{"WatchCutsOffASlowWatcherWhileOthersKeepUp", testWatchCutsOffASlowWatcherWhileOthersKeepUp},
	} {
		t.Run(tc.name, tc.test)
	}
}
