//go:build tools

// Package tools pins the Kubernetes binaries the local system and the
// end-to-end tests run: kube-apiserver and kubectl at v1.37.2, built from the
// Go module proxy so no download site is needed.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
