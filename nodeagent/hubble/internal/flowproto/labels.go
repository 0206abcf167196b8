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

package flowproto

import (
	"maps"
	"slices"
	"strings"
)

// PodLabels turns an endpoint's Cilium labels, "source:key=value" such as
// "k8s:app=web" or "reserved:world", into the pod's Kubernetes labels. Only
// labels from the k8s source (or with no source) are pod labels, less those
// Cilium derives itself (io.kubernetes.pod.namespace, io.cilium.k8s.*).
// Labels that are not valid Kubernetes labels are dropped: they end up in
// metadata.labels, which must validate.
func PodLabels(labels []string) map[string]string {
	var m map[string]string
	for _, l := range labels {
		key, value, _ := strings.Cut(l, "=")
		// A Kubernetes label key has no colon, so one names Cilium's source.
		if source, k, ok := strings.Cut(key, ":"); ok {
			if source != "k8s" {
				continue
			}
			key = k
		}
		if ciliumLabel(key) || len(IsLabelKey(key)) > 0 || len(IsLabelValue(value)) > 0 {
			continue
		}
		if m == nil {
			m = make(map[string]string)
		}
		m[key] = value
	}
	return m
}

// ciliumLabel tells the labels Cilium adds to a pod's identity from things
// other than the pod's own labels: its namespace, service account, cluster
// and namespace labels.
func ciliumLabel(key string) bool {
	return key == "io.kubernetes.pod.namespace" || strings.HasPrefix(key, "io.cilium.")
}

// CiliumLabels is the inverse of PodLabels for a pod: its labels in Cilium's
// form, sorted, with the namespace label Cilium adds to every pod.
func CiliumLabels(labels map[string]string, namespace string) []string {
	out := make([]string, 0, len(labels)+1)
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		out = append(out, "k8s:"+k+"="+labels[k])
	}
	if namespace != "" {
		out = append(out, "k8s:io.kubernetes.pod.namespace="+namespace)
	}
	return out
}
