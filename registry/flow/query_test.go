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

package flow

import (
	"strings"
	"testing"
	"time"

	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
)

func TestCompileQuery(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name, labels, fields string
		wantFields           string
		wantNodes            []string // nil: every agent
		wantSince            string
		wantErr              string
	}{
		{name: "nothing"},
		{name: "pushed as is", fields: "verdict=Dropped,l4.destinationPort!=53", wantFields: "l4.destinationPort!=53,verdict=Dropped"},
		{name: "node routes", fields: "nodeName=node-a", wantFields: "nodeName=node-a", wantNodes: []string{"node-a"}},
		{name: "negated node does not route", fields: "nodeName!=node-a", wantFields: "nodeName!=node-a"},
		{name: "name routes", fields: "metadata.name=ip-10-0-0-1.ec2.internal.1764072000000000", wantFields: "metadata.name=ip-10-0-0-1.ec2.internal.1764072000000000", wantNodes: []string{"ip-10-0-0-1.ec2.internal"}},
		{name: "two nodes select none", fields: "nodeName=a,nodeName=b", wantFields: "nodeName=a,nodeName=b", wantNodes: []string{}},
		{name: "since is a bound, not a field", fields: "since=1h,verdict=Dropped", wantFields: "verdict=Dropped", wantSince: "2026-11-25T11:00:00Z"},
		{name: "two sinces keep the later", fields: "since=2h,since=30m", wantSince: "2026-11-25T11:30:00Z"},
		{name: "since negated", fields: "since!=1h", wantErr: "supports only ="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := &metainternalversion.ListOptions{}
			if tt.fields != "" {
				opts.FieldSelector = fields.ParseSelectorOrDie(tt.fields)
			}
			if tt.labels != "" {
				opts.LabelSelector = labels.SelectorFromSet(labels.Set{"app": tt.labels})
			}
			q, err := compileQuery("shop", opts, now)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if q.filter.Namespace != "shop" || q.filter.FieldSelector != tt.wantFields {
				t.Errorf("filter = %+v, want fields %q", q.filter, tt.wantFields)
			}
			if (q.nodes == nil) != (tt.wantNodes == nil) || strings.Join(q.nodes, ",") != strings.Join(tt.wantNodes, ",") {
				t.Errorf("nodes = %#v, want %#v", q.nodes, tt.wantNodes)
			}
			if tt.wantSince != "" && (q.filter.Since == nil || q.filter.Since.Format(time.RFC3339) != tt.wantSince) {
				t.Errorf("since = %v, want %s", q.filter.Since, tt.wantSince)
			}
		})
	}
}

func TestSplitName(t *testing.T) {
	for name, want := range map[string]string{"node-a.12": "node-a", "a.b.c.99": "a.b.c"} {
		if node, _, ok := splitName(name); !ok || node != want {
			t.Errorf("splitName(%q) = %q, %v", name, node, ok)
		}
	}
	for _, bad := range []string{"", "node", ".5", "node.", "node.x", "node.0", "node.-1"} {
		if _, _, ok := splitName(bad); ok {
			t.Errorf("splitName(%q) accepted", bad)
		}
	}
}

func TestParseRV(t *testing.T) {
	for _, bad := range []string{"abc", "-1", "01", "+5", "1.5"} {
		if _, err := parseRV(bad); err == nil {
			t.Errorf("parseRV(%q) accepted", bad)
		}
	}
	if rv, err := parseRV("123"); err != nil || rv != 123 {
		t.Errorf("parseRV(123) = %d, %v", rv, err)
	}
}

func TestCheckNotTooLarge(t *testing.T) {
	now := time.Unix(1764072000, 0)
	cur := uint64(now.UnixMicro())
	if err := checkNotTooLarge(cur+uint64(30*time.Second/time.Microsecond), now); err != nil {
		t.Errorf("30 s ahead: %v", err)
	}
	err := checkNotTooLarge(cur+uint64(time.Hour/time.Microsecond), now)
	if err == nil || !strings.Contains(err.Error(), "Too large resource version") {
		t.Errorf("an hour ahead: %v, want too large", err)
	}
}
