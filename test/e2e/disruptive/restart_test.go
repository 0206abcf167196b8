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

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/test/e2e/framework"
)

// testContinueTokenSurvivesRestarts pages through a list while every agent
// and the aggregated server restart between pages: the token carries all a
// page needs, and the pages add up to one list.
func testContinueTokenSurvivesRestarts(t *testing.T) {
	seedBase(t)
	cs := clientset(t)
	ctx := context.Background()
	// One namespace: other tests add flows to others, and each page here
	// costs three restarts.
	const ns = "shop"
	// Three pages: the base flows are four of shop's, and eight more.
	var extra []seed
	for i := range int32(8) {
		node := sys.Nodes[i%2]
		extra = append(extra, seed{Node: node, Sport: 40700 + i, Flow: mkFlow(node, 40700+i, 80, "TCP", "Egress", "Forwarded", web1, api1)})
	}
	replay(t, extra...)
	eventually(t, 30*time.Second, "the extra flows of shop to be listed", func() (bool, string) {
		got, err := listSports("", "-n", ns)
		return err == nil && len(inRange(got, 40700, 40707)) == len(extra), fmt.Sprint(got, err)
	})
	all, err := framework.ListAll(ctx, cs, ns, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var want, got []string
	for _, f := range all.Items {
		want = append(want, f.Name)
	}
	opts := metav1.ListOptions{Limit: 4, ResourceVersion: all.ResourceVersion, ResourceVersionMatch: metav1.ResourceVersionMatchExact}
	for page := 0; ; page++ {
		l, err := cs.FlowsV1alpha1().Flows(ns).List(ctx, opts)
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		for _, f := range l.Items {
			got = append(got, f.Name)
		}
		t.Logf("page %d: %d flows, continue %t", page, len(l.Items), l.Continue != "")
		if l.Continue == "" {
			if page == 0 {
				t.Fatalf("one page of %d flows: nothing to continue", len(l.Items))
			}
			break
		}
		opts = metav1.ListOptions{Limit: 4, Continue: l.Continue}
		for _, c := range []string{"agent-node-a", "agent-node-b", "flowscope-apiserver"} {
			before := pidOf(t, c)
			sys.Kill(t, c)()
			if pidOf(t, c) == before {
				t.Fatalf("%s was not restarted", c)
			}
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("pages across restarts\n%v\ndiffer from one list at the same snapshot\n%v", got, want)
	}
}

func pidOf(t *testing.T, component string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(sys.Out, "pids", component+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}
