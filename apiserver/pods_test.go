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

package apiserver

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

func TestPodLocator(t *testing.T) {
	created := metav1.NewTime(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	pod := func(name, node string, deleting bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, CreationTimestamp: created,
			Labels: map[string]string{"app": "web"}}, Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "web"}}}}
		if deleting {
			p.DeletionTimestamp = &created
		}
		return p
	}
	client := fake.NewClientset(pod("web-0", "node-a", false), pod("web-1", "", false), pod("web-2", "node-b", true))
	l := newPodLocator(client)
	if _, _, ok := l.Locate("shop", "web-0"); ok {
		t.Error("located a pod before the informer synced")
	}
	stop := make(chan struct{})
	defer close(stop)
	go l.Run(stop)
	if !cache.WaitForCacheSync(stop, l.pods.HasSynced) {
		t.Fatal("informer did not sync")
	}
	if node, at, ok := l.Locate("shop", "web-0"); !ok || node != "node-a" || !at.Equal(created.Time) {
		t.Errorf("web-0: %q %v %v, want node-a created %v", node, at, ok, created)
	}
	for _, name := range []string{"web-1", "web-2", "web-9"} { // pending, terminating, unknown
		if node, _, ok := l.Locate("shop", name); ok {
			t.Errorf("%s located on %q", name, node)
		}
	}
	obj, _, _ := l.pods.GetIndexer().GetByKey("shop/web-0")
	if p := obj.(*corev1.Pod); p.Labels != nil || p.Spec.Containers != nil {
		t.Errorf("cached pod not trimmed: %+v", p)
	}
}
