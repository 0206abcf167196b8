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
	"fmt"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"
	"k8s.io/component-base/metrics/testutil"
	"k8s.io/utils/ptr"

	"flowscope.io/flowscope/nodeagent/metrics"
)

// fullPod returns a pod as a Deployment creates it and the kubelet reports
// it, with the fields a real object has; every string is its own
// allocation, as after decoding.
func fullPod(i int) *corev1.Pod {
	name := fmt.Sprintf("web-%d-7d9f8c6b5d-%05d", i/100, i)
	rs := fmt.Sprintf("web-%d-7d9f8c6b5d", i/100)
	ip := fmt.Sprintf("10.%d.%d.%d", 1+i>>16&0xff, i>>8&0xff, i&0xff)
	ip6 := fmt.Sprintf("fd00:1::%x", i)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: fmt.Sprintf("team-%d", i%50), UID: types.UID(fmt.Sprintf("8c1e5f8a-3b1d-4c6e-9f0a-%012d", i)),
			ResourceVersion: fmt.Sprint(1000000 + i), GenerateName: rs + "-", CreationTimestamp: t0,
			Labels: map[string]string{
				"app": fmt.Sprintf("web-%d", i/100), "pod-template-hash": "7d9f8c6b5d",
				"app.kubernetes.io/part-of": "shop", "version": "v1.2.3",
			},
			Annotations: map[string]string{
				"kubectl.kubernetes.io/restartedAt": "2026-01-02T03:04:05Z",
				"prometheus.io/scrape":              "true",
			},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs,
				UID: types.UID("2f4e9b1c-0d3a-4e5f-8a7b-6c5d4e3f2a1b"), Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
			ManagedFields: []metav1.ManagedFieldsEntry{
				{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", FieldsType: "FieldsV1",
					FieldsV1: metav1.NewFieldsV1(strings.Repeat("\x00", 1800))},
				{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", FieldsType: "FieldsV1",
					Subresource: "status", FieldsV1: metav1.NewFieldsV1(strings.Repeat("\x00", 900))},
			},
		},
		Spec: corev1.PodSpec{
			NodeName: fmt.Sprintf("node-%d", i%100), ServiceAccountName: "default", RestartPolicy: corev1.RestartPolicyAlways,
			SchedulerName: "default-scheduler", DNSPolicy: corev1.DNSClusterFirst, TerminationGracePeriodSeconds: ptr.To[int64](30),
			Containers: []corev1.Container{{
				Name: "web", Image: "registry.example/shop/web:v1.2.3", ImagePullPolicy: corev1.PullIfNotPresent,
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
				Env: []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "info"}, {Name: "PORT", Value: "8080"},
					{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
				},
				VolumeMounts: []corev1.VolumeMount{{Name: "kube-api-access-x7k2p", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
					PeriodSeconds: 10, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3},
				TerminationMessagePath: "/dev/termination-log", TerminationMessagePolicy: corev1.TerminationMessageReadFile,
			}},
			Volumes: []corev1.Volume{{Name: "kube-api-access-x7k2p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{
					{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](3607)}},
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
						Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
				}, DefaultMode: ptr.To[int32](420)}}}},
			Tolerations: []corev1.Toleration{
				{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
				{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
			},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, HostIP: "10.0.0.1", HostIPs: []corev1.HostIP{{IP: "10.0.0.1"}},
			PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}, {IP: ip6}}, QOSClass: corev1.PodQOSBurstable, StartTime: &t0,
			Conditions: []corev1.PodCondition{
				{Type: "PodReadyToStartContainers", Status: corev1.ConditionTrue, LastTransitionTime: t0},
				{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: t0},
				{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: t0},
				{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: t0},
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: t0},
			},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: "web", Ready: true, Started: ptr.To(true), Image: "registry.example/shop/web:v1.2.3",
				ImageID:     "registry.example/shop/web@sha256:4f1d2c3b4a5968778695a4b3c2d1e0f9e8d7c6b5a4938271605f4e3d2c1b0a99",
				ContainerID: "containerd://9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b",
				State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: t0}},
			}},
		},
	}
}

func TestTrimPod(t *testing.T) {
	full := fullPod(1)
	full.OwnerReferences = append([]metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "gc-only", UID: "u-cm"}}, full.OwnerReferences...)
	got, err := trim(full)
	if err != nil {
		t.Fatal(err)
	}
	want := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: full.Name, Namespace: full.Namespace, UID: full.UID, ResourceVersion: full.ResourceVersion,
			CreationTimestamp: full.CreationTimestamp, Labels: full.Labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: full.OwnerReferences[1].Name,
				UID: full.OwnerReferences[1].UID, Controller: ptr.To(true)}},
		},
		Spec:   corev1.PodSpec{NodeName: full.Spec.NodeName},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIPs: full.Status.PodIPs},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("trim(pod) =\n%+v\nwant\n%+v", got, want)
	}
	if again, _ := trim(got); !reflect.DeepEqual(again, got) {
		t.Errorf("trim is not idempotent:\n%+v\n%+v", again, got)
	}
	legacy := newPod("shop", "legacy", "node-a", nil, hostNetwork)
	legacy.Status.PodIP = "10.0.0.1"
	if got := trimPod(legacy); !got.Spec.HostNetwork || !reflect.DeepEqual(got.Status.PodIPs, []corev1.PodIP{{IP: "10.0.0.1"}}) {
		t.Errorf("trimPod kept %+v, %v", got.Status.PodIPs, got.Spec.HostNetwork)
	}
}

func TestTrim(t *testing.T) {
	deleted := cache.DeletedFinalStateUnknown{Key: "shop/a", Obj: fullPod(2)}
	for _, tc := range []struct {
		name string
		in   any
		want any
	}{
		{"service", &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "u1", ResourceVersion: "7",
				Annotations: map[string]string{"a": "b"}, Labels: map[string]string{"app": "web"}},
			Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"}, Selector: map[string]string{"app": "web"},
				Ports: []corev1.ServicePort{{Port: 80}}},
		}, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "u1", ResourceVersion: "7"},
			Spec:       corev1.ServiceSpec{ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"}},
		}},
		{"endpoint slice", &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: "web-x", Namespace: "shop", Labels: map[string]string{
				discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.5"}, NodeName: ptr.To("node-a"),
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "web-1"}}},
			Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
		}, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "web-x", Namespace: "shop", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.5"}}},
			Ports:       []discoveryv1.EndpointPort{{Port: ptr.To[int32](8080)}},
		}},
		{"node", &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "node-a", Labels: map[string]string{"zone": "a"}},
			Status: corev1.NodeStatus{
				Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}, {Type: corev1.NodeHostName, Address: "node-a"},
					{Type: corev1.NodeInternalIP, Address: "fd00::1"}, {Type: corev1.NodeExternalIP, Address: "203.0.113.1"}},
				Images: []corev1.ContainerImage{{Names: []string{"registry.example/a:1"}, SizeBytes: 1 << 20}},
			},
		}, &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "node-a"},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}, {Type: corev1.NodeInternalIP, Address: "fd00::1"}}},
		}},
		{"metadata", &metav1.PartialObjectMetadata{
			TypeMeta: metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "PartialObjectMetadata"},
			ObjectMeta: metav1.ObjectMeta{Name: "web-7d9f", Namespace: "shop", UID: "u2", Labels: map[string]string{"app": "web"},
				Annotations:     map[string]string{"deployment.kubernetes.io/revision": "3"},
				OwnerReferences: []metav1.OwnerReference{*controllerRef("apps/v1", "Deployment", "web")}},
		}, &metav1.PartialObjectMetadata{
			TypeMeta: metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "PartialObjectMetadata"},
			ObjectMeta: metav1.ObjectMeta{Name: "web-7d9f", Namespace: "shop", UID: "u2",
				OwnerReferences: []metav1.OwnerReference{*controllerRef("apps/v1", "Deployment", "web")}},
		}},
		{"deleted final state unknown passes through", deleted, deleted},
		{"other types pass through", &corev1.ConfigMap{Data: map[string]string{"a": "b"}}, &corev1.ConfigMap{Data: map[string]string{"a": "b"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := trim(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("trim =\n%+v\nwant\n%+v", got, tc.want)
			}
			if again, _ := trim(got); !reflect.DeepEqual(again, got) {
				t.Errorf("trim is not idempotent:\n%+v\n%+v", again, got)
			}
		})
	}
}

func labelsOmitted(t *testing.T) float64 {
	t.Helper()
	n, err := testutil.GetCounterMetricValue(metrics.LabelsOmitted)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestTrimPodBoundsLabels: a pod's labels up to MaxLabelBytes reach its
// flows as they are; over it, only LabelsOmitted does, and it is counted.
func TestTrimPodBoundsLabels(t *testing.T) {
	p := fullPod(1)
	p.Labels = map[string]string{"app": "web"}
	if got := trimPod(p).Labels; !reflect.DeepEqual(got, p.Labels) {
		t.Errorf("labels within the bound: %v", got)
	}
	before := labelsOmitted(t)
	value := strings.Repeat("v", 63)
	p.Labels = map[string]string{}
	for i := 0; len(p.Labels)*(63+8) <= MaxLabelBytes; i++ {
		p.Labels[fmt.Sprintf("k%07d", i)] = value
	}
	got := trimPod(p).Labels
	if len(got) != 1 || got[LabelsOmitted] == "" {
		t.Errorf("labels over the bound: %d of them, %v", len(got), got[LabelsOmitted])
	}
	if d := labelsOmitted(t) - before; d != 1 {
		t.Errorf("LabelsOmitted counted %v, want 1", d)
	}
}
