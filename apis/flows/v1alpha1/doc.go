// Package v1alpha1 is the v1alpha1 version of the flows.flowscope.io API: a
// read-only, namespaced Flow resource served by flowscope-apiserver from the
// node agents' stores.
//
// +k8s:deepcopy-gen=package
// +k8s:openapi-gen=true
// +k8s:openapi-model-package=io.flowscope.flows.v1alpha1
// +groupName=flows.flowscope.io
package v1alpha1
