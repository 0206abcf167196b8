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

// Package shares tests the fair shares of the on-demand store's budget
// end to end, as the hardening issue's attack: one namespace floods a
// node's agent with flows. Its agents run with a store budget small enough
// to flood in a minute, and the flood fills it, so it has a local system
// of its own rather than disturb the tests of ../ (package e2e).
package shares

import (
	"os"
	"strconv"
	"testing"

	"flowscope.io/flowscope/test/e2e/framework"
)

var sys *framework.System

// storeBudget is the agents' --max-store-bytes: some 30,000 flows, which
// replay writes in seconds.
const storeBudget = 2 << 20

func TestMain(m *testing.M) {
	os.Exit(framework.Main(m, framework.Options{Env: []string{"AGENT_ARGS=--max-store-bytes=" + strconv.Itoa(storeBudget)}}, &sys))
}
