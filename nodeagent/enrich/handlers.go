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
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The handlers receive objects already trimmed by trim. Deletes of an
// object of another type (which informers never deliver) are ignored.
// Entries are built before taking the lock, to keep writers' critical
// sections to the map updates.

func (e *Enricher) setPod(obj any) {
	if p, ok := obj.(*corev1.Pod); ok {
		entry := newPodEntry(p)
		e.mu.Lock()
		defer e.mu.Unlock()
		e.x.setPod(objKey{p.Namespace, p.Name}, entry)
	}
}

func (e *Enricher) deletePod(obj any) {
	if p, ok := obj.(*corev1.Pod); ok {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.x.setPod(objKey{p.Namespace, p.Name}, nil)
	}
}

// ownerHandlers returns the handlers of a metadata informer of ReplicaSets
// or Jobs (kind).
func (e *Enricher) ownerHandlers(kind string) (set, del func(any)) {
	set = func(obj any) {
		if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
			w := ownerWorkloads(kind, m)
			e.mu.Lock()
			defer e.mu.Unlock()
			e.x.setOwner(m.UID, w)
		}
	}
	del = func(obj any) {
		if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.x.setOwner(m.UID, nil)
		}
	}
	return set, del
}

func (e *Enricher) setService(obj any) {
	if s, ok := obj.(*corev1.Service); ok {
		ips, strs := serviceAddresses(s)
		e.mu.Lock()
		defer e.mu.Unlock()
		e.x.setService(objKey{s.Namespace, s.Name}, ips, strs)
	}
}

func (e *Enricher) deleteService(obj any) {
	if s, ok := obj.(*corev1.Service); ok {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.x.setService(objKey{s.Namespace, s.Name}, nil, nil)
	}
}

func (e *Enricher) setSlice(obj any) {
	if s, ok := obj.(*discoveryv1.EndpointSlice); ok {
		entry := newSliceEntry(s)
		e.mu.Lock()
		defer e.mu.Unlock()
		e.x.setSlice(objKey{s.Namespace, s.Name}, entry)
	}
}

func (e *Enricher) deleteSlice(obj any) {
	if s, ok := obj.(*discoveryv1.EndpointSlice); ok {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.x.setSlice(objKey{s.Namespace, s.Name}, nil)
	}
}

func (e *Enricher) setNode(obj any) {
	if n, ok := obj.(*corev1.Node); ok {
		ips, strs := nodeAddresses(n)
		e.mu.Lock()
		defer e.mu.Unlock()
		e.x.setNode(n.Name, ips, strs)
	}
}

func (e *Enricher) deleteNode(obj any) {
	if n, ok := obj.(*corev1.Node); ok {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.x.setNode(n.Name, nil, nil)
	}
}
