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

package v1alpha1

import (
	"maps"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/utils/ptr"
)

func TestConvertFieldLabel(t *testing.T) {
	tests := []struct {
		label, value string
		want         string
		wantErr      string
	}{
		{label: "verdict", value: "dropped", want: "Dropped"},
		{label: "verdict", value: "DROPPED", want: "Dropped"},
		{label: "verdict", value: "lost", wantErr: `invalid value "lost" for field selector verdict: must be one of Unknown, Forwarded, Dropped`},
		{label: "trafficDirection", value: "ingress", want: "Ingress"},
		{label: "l4.protocol", value: "tcp", want: "TCP"},
		{label: "l4.destinationPort", value: "0080", want: "80"},
		{label: "l4.destinationPort", value: "70000", wantErr: "must be a port number from 0 to 65535"},
		{label: "l4.sourcePort", value: "http", wantErr: "must be a port number"},
		{label: "l7.http.code", value: "503", want: "503"},
		{label: "source.ip", value: "fd00::0001", want: "fd00::1"},
		{label: "source.ip", value: "10.0.0", wantErr: "must be an IP address"},
		{label: "source.podName", value: "web-1", want: "web-1"},
		{label: "isReply", value: "TRUE", want: "true"},
		{label: "since", value: "1h", want: "1h"},
		{label: "since", value: "2026-01-02T15:04:05Z", want: "2026-01-02T15:04:05Z"},
		{label: "until", value: "yesterday", wantErr: "must be a duration such as 90s or 1h, or an RFC 3339 time"},
		{label: "since", value: "-5m", wantErr: "must not be negative"},
		{label: "spec.bogus", value: "x", wantErr: "field label not supported: spec.bogus (supported: metadata.name, metadata.namespace, nodeName, verdict"},
	}
	for _, tt := range tests {
		t.Run(tt.label+"="+tt.value, func(t *testing.T) {
			label, got, err := ConvertFieldLabel(tt.label, tt.value)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || label != tt.label || got != tt.want {
				t.Fatalf("ConvertFieldLabel = %q, %q, %v; want %q, %q", label, got, err, tt.label, tt.want)
			}
		})
	}
}

// TestFieldSetCoversSelectableFields guards against a selectable field that
// FieldSet forgets: a selector on it would silently match nothing.
func TestFieldSetCoversSelectableFields(t *testing.T) {
	set := FieldSet(&Flow{})
	for _, f := range SelectableFields {
		if f == FieldSince || f == FieldUntil {
			continue
		}
		if _, ok := set[f]; !ok {
			t.Errorf("FieldSet has no %q", f)
		}
	}
}

func TestFieldSetMatches(t *testing.T) {
	f := &Flow{
		ObjectMeta: metav1.ObjectMeta{Name: "node-a.5", Namespace: "shop"},
		Time:       metav1.NewMicroTime(time.Now()), NodeName: "node-a",
		Verdict: VerdictDropped, DropReason: "POLICY_DENIED", TrafficDirection: TrafficDirectionEgress,
		IsReply:     ptr.To(false),
		L4:          &Layer4{Protocol: ProtocolTCP, SourcePort: 40000, DestinationPort: 5432},
		Source:      &Endpoint{Namespace: "shop", PodName: "web-1", IP: "10.0.0.1", Workloads: []Workload{{Kind: "ReplicaSet", Name: "web-abc"}, {Kind: "Deployment", Name: "web"}}},
		Destination: &Endpoint{Namespace: "payments", PodName: "db-0", IP: "10.0.0.2", Service: "db"},
		L7:          &Layer7{Type: L7TypeHTTP, HTTP: &HTTP{Code: 503, Method: "GET", URL: "/v1/orders"}},
	}
	set := FieldSet(f)
	want := fields.Set{
		"metadata.name": "node-a.5", "metadata.namespace": "shop", "nodeName": "node-a",
		"verdict": "Dropped", "dropReason": "POLICY_DENIED", "trafficDirection": "Egress", "isReply": "false",
		"l4.protocol": "TCP", "l4.sourcePort": "40000", "l4.destinationPort": "5432",
		"source.namespace": "shop", "source.podName": "web-1", "source.ip": "10.0.0.1", "source.service": "", "source.workload": "web",
		"destination.namespace": "payments", "destination.podName": "db-0", "destination.ip": "10.0.0.2",
		"destination.service": "db", "destination.workload": "",
		"l7.type": "HTTP", "l7.http.code": "503", "l7.http.method": "GET", "l7.http.url": "/v1/orders",
		"l7.dns.query": "", "l7.dns.rcode": "", "l7.grpc.method": "", "l7.kafka.topic": "", "l7.kafka.apiKey": "",
	}
	if !maps.Equal(set, want) {
		t.Errorf("FieldSet = %v\nwant %v", set, want)
	}
	for sel, want := range map[string]bool{
		"verdict=Dropped,l4.destinationPort=5432":         true,
		"source.workload=web":                             true,
		"destination.service=db,destination.podName=db-0": true,
		"l7.http.code=503,isReply=false":                  true,
		"nodeName=node-b":                                 false,
		"l4.destinationPort!=5432":                        false,
		"source.ip=10.0.0.1,dropReason=POLICY_DENIED":     true,
	} {
		s, err := fields.ParseSelector(sel)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Matches(set); got != want {
			t.Errorf("%s matches = %v, want %v", sel, got, want)
		}
	}
}
