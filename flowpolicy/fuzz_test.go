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

package flowpolicy

import (
	"encoding/json"
	"testing"

	cfg "flowscope.io/flowscope/apis/config/v1alpha1"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// FuzzCompile feeds Compile specs as any client may write them, past a
// schema that an agent does not rely on: Compile and Warnings must not
// panic, and a spec that compiles must select what the reference does.
func FuzzCompile(f *testing.F) {
	for _, seed := range []string{
		`{"includefilters":[{}]}`,
		`{"includefilters":[{"from":{"namespacedPod":["shop/web-"],"ip":["10.244.0.0/16"]},"to":{"labelSelector":{"matchLabels":{"k8s.io/namespace":"shop"}}}}]}`,
		`{"includefilters":[{"protocol":["dns"],"l7":{"types":["dns"],"dnsQuerySuffixes":["cluster.local."]}}],"excludefilters":[{"verdict":["dropped"]}]}`,
		`{"includefilters":[{"ports":[{"port":8000,"endPort":9000}],"services":["shop/cart"],"trafficDirection":["egress"]}],"retention":"1h","outputs":["OTLP"]}`,
		`{"includefilters":[{"dropReasons":["POLICY_DENIED"],"verdict":["forwarded"],"l7":{"httpMethods":["GET"],"httpStatusClasses":["5xx"]}}]}`,
		`{"includefilters":[{"to":{"labelSelector":{"matchExpressions":[{"key":"k8s.io/namespace","operator":"NotIn","values":["shop"]}]}}}]}`,
	} {
		f.Add(seed, "shop")
	}
	flows := append(generatedFlows(f, 150, 2), webToCart(), webToCart(noSource), webToCart(toWorld, dropped("POLICY_DENIED")),
		webToCart(l4(v1alpha1.ProtocolUDP, 40000, 53), dnsQuery("A.Example.com.")), webToCart(httpCall("POST", 503)),
		webToCart(icmp(v1alpha1.ProtocolICMPv6), func(f *v1alpha1.Flow) { f.Destination.IP = "::ffff:10.244.1.12" }))
	f.Fuzz(func(t *testing.T, specJSON, namespace string) {
		var spec cfg.FlowLogPolicySpec
		if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
			return
		}
		Warnings(namespace, &spec, agentNamespace)
		p, err := Compile(namespace, &spec)
		if err != nil {
			return
		}
		for _, fl := range flows {
			if got, want := p.Matches(fl), reference(namespace, &spec, fl); got != want {
				t.Fatalf("Matches = %v, reference %v\nflow: %s", got, want, dump(fl))
			}
		}
	})
}
