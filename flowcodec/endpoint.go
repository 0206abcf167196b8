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
	"math"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

func (e *encoder) endpoint(ep *v1alpha1.Endpoint, l4Port int32, refs bool, src, dst string) {
	e.addr(ep.IP, refs, src, dst)
	if ep.Port == l4Port {
		e.b = append(e.b, 0)
	} else {
		e.uvarint(zigzag(int64(ep.Port)) + 1)
	}
	e.string(ep.Namespace)
	e.string(ep.PodName)
	e.strMap(ep.Labels)
	e.uvarint(uint64(len(ep.Workloads)))
	for _, w := range ep.Workloads {
		e.enum(w.Kind, workloadKinds)
		e.string(w.Name)
	}
	e.string(ep.Service)
}

func (d *decoder) endpoint(ep *v1alpha1.Endpoint, l4Port int32, refs bool, src, dst strRef) {
	d.set(&ep.IP, d.addr(refs, src, dst))
	if p := d.uvarint(); p == 0 {
		ep.Port = l4Port
	} else {
		v := unzigzag(p - 1)
		if v < math.MinInt32 || v > math.MaxInt32 || int32(v) == l4Port {
			d.fail("bad port")
			return
		}
		ep.Port = int32(v)
	}
	ep.Namespace = d.string()
	ep.PodName = d.string()
	ep.Labels = d.strMap()
	if n := d.count(2); n > 0 {
		ep.Workloads = make([]v1alpha1.Workload, n)
		for i := range ep.Workloads {
			ep.Workloads[i].Kind = d.enum(workloadKinds)
			ep.Workloads[i].Name = d.string()
		}
	}
	ep.Service = d.string()
}
