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

// Package hubbletest holds the test fixture that the tests of packages
// parse and format share: a line of Hubble's flow export and its Flow.
package hubbletest

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// Line is an egress TCP SYN from a web pod to a cart pod as Cilium's
// exporter writes it.
const Line = `{"flow":{"time":"2026-03-02T09:15:04.118220391Z","uuid":"5b0d7c3e-1f7a-4c52-9a3e-1b2c3d4e5f60",` +
	`"verdict":"FORWARDED","ethernet":{"source":"4a:10:7f:2e:91:0c","destination":"d2:5e:11:08:aa:43"},` +
	`"IP":{"source":"10.244.1.23","destination":"10.244.2.41","ipVersion":"IPv4"},` +
	`"l4":{"TCP":{"source_port":48212,"destination_port":8080,"flags":{"SYN":true}}},` +
	`"source":{"ID":1712,"identity":40211,"cluster_name":"demo","namespace":"shop",` +
	`"labels":["k8s:app=web","k8s:io.cilium.k8s.policy.cluster=demo","k8s:io.kubernetes.pod.namespace=shop","k8s:tier=front"],` +
	`"pod_name":"web-6f9c7b8d4-x2k9p","workloads":[{"name":"web","kind":"Deployment"}]},` +
	`"destination":{"identity":51877,"namespace":"shop","labels":["k8s:app=cart","k8s:io.kubernetes.pod.namespace=shop"],` +
	`"pod_name":"cart-58d4c9f7b-q8m2v","workloads":[{"name":"cart","kind":"Deployment"}]},` +
	`"Type":"L3_L4","node_name":"demo/node-a","event_type":{"type":4,"sub_type":3},` +
	`"traffic_direction":"EGRESS","trace_observation_point":"TO_STACK","trace_reason":"NEW","is_reply":false,` +
	`"interface":{"index":14,"name":"lxc8d2e41f0a6b1"},"Summary":"TCP Flags: SYN"},` +
	`"node_name":"demo/node-a","time":"2026-03-02T09:15:04.118220391Z"}`

// Flow returns what Line parses into.
func Flow() *v1alpha1.Flow {
	t := time.Date(2026, 3, 2, 9, 15, 4, 118220000, time.UTC)
	return &v1alpha1.Flow{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:         "shop",
			UID:               "5b0d7c3e-1f7a-4c52-9a3e-1b2c3d4e5f60",
			CreationTimestamp: metav1.NewTime(t.Truncate(time.Second)),
			Labels:            map[string]string{"app": "web", "tier": "front"},
		},
		Time:             metav1.NewMicroTime(t),
		EndTime:          ptr.To(metav1.NewMicroTime(t)),
		NodeName:         "node-a",
		Verdict:          v1alpha1.VerdictForwarded,
		TrafficDirection: v1alpha1.TrafficDirectionEgress,
		IsReply:          ptr.To(false),
		Interface:        "lxc8d2e41f0a6b1",
		IP:               &v1alpha1.IP{Source: "10.244.1.23", Destination: "10.244.2.41", IPVersion: v1alpha1.IPv4},
		L4: &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolTCP, SourcePort: 48212, DestinationPort: 8080,
			TCPFlags: []string{"SYN"}},
		Source: &v1alpha1.Endpoint{IP: "10.244.1.23", Port: 48212, Namespace: "shop", PodName: "web-6f9c7b8d4-x2k9p",
			Labels:    map[string]string{"app": "web", "tier": "front"},
			Workloads: []v1alpha1.Workload{{Kind: "Deployment", Name: "web"}}},
		Destination: &v1alpha1.Endpoint{IP: "10.244.2.41", Port: 8080, Namespace: "shop", PodName: "cart-58d4c9f7b-q8m2v",
			Labels:    map[string]string{"app": "cart"},
			Workloads: []v1alpha1.Workload{{Kind: "Deployment", Name: "cart"}}},
		Traffic: &v1alpha1.Traffic{Packets: 1},
	}
}
