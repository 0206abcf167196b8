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

package capture

import (
	"strings"
	"testing"

	"k8s.io/component-base/metrics"
)

func TestCollector(t *testing.T) {
	d := requireDatapath(t, Options{})
	reg := metrics.NewKubeRegistry()
	reg.CustomMustRegister(NewCollector(d))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"flowscope_agent_capture_attached_interfaces":     "GAUGE",
		"flowscope_agent_capture_connections":             "GAUGE",
		"flowscope_agent_capture_drops_seen_total":        "COUNTER",
		"flowscope_agent_capture_events_total":            "COUNTER",
		"flowscope_agent_capture_filtered_out_total":      "COUNTER",
		"flowscope_agent_capture_flushed_total":           "COUNTER",
		"flowscope_agent_capture_lost_events_total":       "COUNTER",
		"flowscope_agent_capture_packets_total":           "COUNTER",
		"flowscope_agent_capture_parse_errors_total":      "COUNTER",
		"flowscope_agent_capture_untracked_packets_total": "COUNTER",
		"flowscope_agent_l7_events_total":                 "COUNTER",
		"flowscope_agent_l7_events_dropped_total":         "COUNTER",
	}
	reasons := map[string]string{
		"flowscope_agent_l7_events_dropped_total":         "conn_rate_limit,cpu_rate_limit,decode_error,ring_full,unreadable",
		"flowscope_agent_capture_untracked_packets_total": "interface_budget,record_ending,table_full",
	}
	got := map[string]string{}
	for _, mf := range families {
		got[mf.GetName()] = mf.GetType().String()
		if !strings.HasPrefix(mf.GetHelp(), "[ALPHA] ") {
			t.Errorf("%s: help %q, want it marked ALPHA", mf.GetName(), mf.GetHelp())
		}
		if want, ok := reasons[mf.GetName()]; ok {
			var got []string
			for _, m := range mf.GetMetric() {
				if l := m.GetLabel(); len(l) == 1 && l[0].GetName() == "reason" {
					got = append(got, l[0].GetValue())
				}
			}
			if got := strings.Join(got, ","); got != want {
				t.Errorf("%s: reasons %s, want %s", mf.GetName(), got, want)
			}
			continue
		}
		if m := mf.GetMetric(); len(m) != 1 || len(m[0].GetLabel()) != 0 {
			t.Errorf("%s: %d series (labels %v), want one without labels", mf.GetName(), len(m), m)
		}
		if mf.GetName() == "flowscope_agent_capture_attached_interfaces" && mf.GetMetric()[0].GetGauge().GetValue() != 0 {
			t.Errorf("attached interfaces %v before any attach", mf.GetMetric()[0].GetGauge().GetValue())
		}
	}
	for name, typ := range want {
		if got[name] != typ {
			t.Errorf("%s: %q, want %q", name, got[name], typ)
		}
	}
	if len(got) != len(want) {
		t.Errorf("metrics %v, want %v", got, want)
	}
}
