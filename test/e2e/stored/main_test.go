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

// Package stored tests stored mode end to end: flow log policies applied
// by the agents, the flow log files they write and rotate, and the
// long-retention tier. Its agents run with a one-minute on-demand
// retention and small flow log files, so it has a local system of its own.
package stored

import (
	"os"
	"testing"

	"flowscope.io/flowscope/test/e2e/framework"
)

var sys *framework.System

// The agents' flags of this suite: flows leave the on-demand store after
// a minute (the tier test waits for that), and flow log files rotate at
// 256 KiB (a few hundred lines), keeping every rotated file for the
// round trip.
const agentArgs = "--retention=1m --flow-log-max-size=256Ki --flow-log-max-backups=200"

func TestMain(m *testing.M) {
	os.Exit(framework.Main(m, framework.Options{Env: []string{"AGENT_ARGS=" + agentArgs}}, &sys))
}
