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
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"flowscope.io/flowscope/registry/flow"
)

// podLocator tells lists which node a pod runs on, from an informer over
// every pod trimmed to its name, node and lifetime: a few hundred bytes a
// pod. Without RBAC to watch pods it never syncs, and lists fan out.
type podLocator struct {
	factory informers.SharedInformerFactory
	pods    cache.SharedIndexInformer
}

var _ flow.Pods = (*podLocator)(nil)

func newPodLocator(client kubernetes.Interface) *podLocator {
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(trimPod))
	return &podLocator{factory: factory, pods: factory.Core().V1().Pods().Informer()}
}

// Run follows the pods until stop is closed.
func (l *podLocator) Run(stop <-chan struct{}) {
	l.factory.Start(stop)
	<-stop
	l.factory.Shutdown()
}

// Locate implements flow.Pods.
func (l *podLocator) Locate(namespace, name string) (string, time.Time, bool) {
	if !l.pods.HasSynced() {
		return "", time.Time{}, false
	}
	obj, ok, err := l.pods.GetIndexer().GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return "", time.Time{}, false
	}
	pod := obj.(*corev1.Pod)
	// A terminating pod's successor of the same name may be starting on
	// another node already.
	if pod.Spec.NodeName == "" || pod.DeletionTimestamp != nil {
		return "", time.Time{}, false
	}
	return pod.Spec.NodeName, pod.CreationTimestamp.Time, true
}

// trimPod keeps what Locate reads.
func trimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a tombstone
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID, ResourceVersion: pod.ResourceVersion,
			CreationTimestamp: pod.CreationTimestamp, DeletionTimestamp: pod.DeletionTimestamp,
		},
		Spec: corev1.PodSpec{NodeName: pod.Spec.NodeName},
	}, nil
}
