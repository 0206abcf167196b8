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

package enrich

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/nodeagent/metrics"
)

// trim is the informers' cache.TransformFunc: it keeps only what the index
// reads, so the informers' caches stay small (managedFields, annotations,
// pod specs and statuses, node images and conditions are most of an
// object). It builds new objects rather than clearing fields, so the decoded
// object is garbage as soon as the informer is done with it, and it is
// idempotent, as client-go requires. Other types pass through unchanged.
func trim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return trimPod(o), nil
	case *corev1.Service:
		return &corev1.Service{
			ObjectMeta: trimMeta(&o.ObjectMeta, false, false),
			Spec:       corev1.ServiceSpec{ClusterIP: o.Spec.ClusterIP, ClusterIPs: o.Spec.ClusterIPs},
		}, nil
	case *discoveryv1.EndpointSlice:
		return trimSlice(o), nil
	case *corev1.Node:
		return trimNode(o), nil
	case *metav1.PartialObjectMetadata:
		return &metav1.PartialObjectMetadata{TypeMeta: o.TypeMeta, ObjectMeta: trimMeta(&o.ObjectMeta, false, true)}, nil
	}
	return obj, nil
}

// trimMeta keeps the identity of an object, and optionally its labels and
// its controller reference (the other owner references are not followed).
func trimMeta(m *metav1.ObjectMeta, labels, controller bool) metav1.ObjectMeta {
	out := metav1.ObjectMeta{
		Name:              m.Name,
		Namespace:         m.Namespace,
		UID:               m.UID,
		ResourceVersion:   m.ResourceVersion,
		CreationTimestamp: m.CreationTimestamp,
		DeletionTimestamp: m.DeletionTimestamp,
	}
	if labels {
		out.Labels = boundLabels(m)
	}
	if controller {
		if ref := metav1.GetControllerOfNoCopy(m); ref != nil {
			out.OwnerReferences = []metav1.OwnerReference{{
				APIVersion: ref.APIVersion,
				Kind:       ref.Kind,
				Name:       ref.Name,
				UID:        ref.UID,
				Controller: ref.Controller,
			}}
		}
	}
	return out
}

func trimPod(p *corev1.Pod) *corev1.Pod {
	out := &corev1.Pod{
		ObjectMeta: trimMeta(&p.ObjectMeta, true, true),
		Spec:       corev1.PodSpec{NodeName: p.Spec.NodeName, HostNetwork: p.Spec.HostNetwork},
		Status:     corev1.PodStatus{Phase: p.Status.Phase, PodIPs: p.Status.PodIPs},
	}
	if len(out.Status.PodIPs) == 0 && p.Status.PodIP != "" {
		out.Status.PodIPs = []corev1.PodIP{{IP: p.Status.PodIP}}
	}
	return out
}

func trimSlice(s *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	out := &discoveryv1.EndpointSlice{
		ObjectMeta:  trimMeta(&s.ObjectMeta, false, false),
		AddressType: s.AddressType,
	}
	if svc, ok := s.Labels[discoveryv1.LabelServiceName]; ok {
		out.Labels = map[string]string{discoveryv1.LabelServiceName: svc}
	}
	if len(s.Endpoints) > 0 {
		out.Endpoints = make([]discoveryv1.Endpoint, len(s.Endpoints))
		for i, ep := range s.Endpoints {
			out.Endpoints[i] = discoveryv1.Endpoint{Addresses: ep.Addresses}
		}
	}
	if len(s.Ports) > 0 {
		out.Ports = make([]discoveryv1.EndpointPort, len(s.Ports))
		for i, p := range s.Ports {
			out.Ports[i] = discoveryv1.EndpointPort{Port: p.Port}
		}
	}
	return out
}

func trimNode(n *corev1.Node) *corev1.Node {
	out := &corev1.Node{ObjectMeta: trimMeta(&n.ObjectMeta, false, false)}
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			out.Status.Addresses = append(out.Status.Addresses, a)
		}
	}
	return out
}

// MaxLabelBytes bounds the labels, keys and values together, that flows
// copy from a pod. Kubernetes bounds each label but not their number (an
// object may take 1.5 MiB), and every flow of the pod carries them into
// the store, whose frames of 256 flows must stay under 64 MiB to decode.
const MaxLabelBytes = 16 << 10

// LabelsOmitted is the label that replaces the labels of a pod over
// MaxLabelBytes, so that its flows say why they have none.
const LabelsOmitted = "flowscope.io/labels-omitted"

// boundLabels returns m's labels, or, over MaxLabelBytes, LabelsOmitted
// alone: a part of them would make label selectors match wrongly.
func boundLabels(m *metav1.ObjectMeta) map[string]string {
	n := 0
	for k, v := range m.Labels {
		n += len(k) + len(v)
	}
	if n <= MaxLabelBytes {
		return m.Labels
	}
	metrics.LabelsOmitted.Inc()
	klog.InfoS("Flows of this pod carry no labels: they are too large", "pod", klog.KRef(m.Namespace, m.Name), "bytes", n, "max", MaxLabelBytes)
	return map[string]string{LabelsOmitted: strconv.Itoa(n) + "-bytes"}
}
