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

package flowcodec

import (
	"slices"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// SameEncoding reports whether Marshal encodes a and b to the same bytes,
// without encoding either: the store's frames keep each distinct shape of
// flow once, and most flows have the shape of the flow before them. It
// compares every field the encoder reads, so it never answers true for
// flows that encode differently; it answers false for some that encode the
// same: flows with rarely set metadata (rareFlags), and values that differ
// but encode alike (a time in another location).
func SameEncoding(a, b *v1alpha1.Flow) bool {
	if a == b {
		return true
	}
	if a == nil || b == nil || rareFlags(&a.ObjectMeta) != 0 || rareFlags(&b.ObjectMeta) != 0 {
		return false
	}
	return a.TypeMeta == b.TypeMeta && a.Name == b.Name && a.Namespace == b.Namespace &&
		a.UID == b.UID && a.ResourceVersion == b.ResourceVersion &&
		a.CreationTimestamp == b.CreationTimestamp && a.Time == b.Time && ptrEqual(a.EndTime, b.EndTime) &&
		a.NodeName == b.NodeName && a.Verdict == b.Verdict && a.DropReason == b.DropReason &&
		a.TrafficDirection == b.TrafficDirection && ptrEqual(a.IsReply, b.IsReply) && a.Interface == b.Interface &&
		ptrEqual(a.IP, b.IP) && sameLayer4(a.L4, b.L4) && sameLayer7(a.L7, b.L7) && ptrEqual(a.Traffic, b.Traffic) &&
		// The labels last: they cost the most to compare.
		sameEndpoint(a.Source, b.Source) && sameEndpoint(a.Destination, b.Destination) &&
		mapsEqual(a.Labels, b.Labels)
}

func ptrEqual[T comparable](a, b *T) bool {
	return a == b || a != nil && b != nil && *a == *b
}

func sameLayer4(a, b *v1alpha1.Layer4) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Protocol == b.Protocol && a.SourcePort == b.SourcePort && a.DestinationPort == b.DestinationPort &&
		slices.Equal(a.TCPFlags, b.TCPFlags) && ptrEqual(a.ICMP, b.ICMP)
}

func sameEndpoint(a, b *v1alpha1.Endpoint) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.IP == b.IP && a.Port == b.Port && a.Namespace == b.Namespace && a.PodName == b.PodName &&
		a.Service == b.Service && slices.Equal(a.Workloads, b.Workloads) && mapsEqual(a.Labels, b.Labels)
}

func sameLayer7(a, b *v1alpha1.Layer7) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.Type != b.Type || a.Partial != b.Partial || !ptrEqual(a.Latency, b.Latency) || !ptrEqual(a.Kafka, b.Kafka) {
		return false
	}
	if x, y := a.DNS, b.DNS; x != y {
		if x == nil || y == nil || x.Query != y.Query || x.TTL != y.TTL || x.RCode != y.RCode ||
			x.RetriedOverTCP != y.RetriedOverTCP || !slices.Equal(x.IPs, y.IPs) || !slices.Equal(x.CNAMEs, y.CNAMEs) ||
			!slices.Equal(x.QTypes, y.QTypes) || !slices.Equal(x.RRTypes, y.RRTypes) {
			return false
		}
	}
	if x, y := a.HTTP, b.HTTP; x != y {
		if x == nil || y == nil || x.Code != y.Code || x.Method != y.Method || x.URL != y.URL ||
			x.Protocol != y.Protocol || !slices.Equal(x.Headers, y.Headers) || !slices.Equal(x.ResponseHeaders, y.ResponseHeaders) {
			return false
		}
	}
	if x, y := a.GRPC, b.GRPC; x != y {
		if x == nil || y == nil || x.Service != y.Service || x.Method != y.Method || x.StatusCode != y.StatusCode ||
			x.Message != y.Message || !slices.Equal(x.ResponseHeaders, y.ResponseHeaders) {
			return false
		}
	}
	return true
}
