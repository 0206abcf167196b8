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

package store

import (
	"encoding/binary"
	"strconv"
	"time"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// Secondary indexes.
//
// Every block (block.go) has, for each indexed field, one posting list per
// distinct non-empty value among its flows:
//
//	p<field:1><len:uvarint><value><minTime:8><firstRV:8>   positions (postings.go)
//
// The value is length-prefixed, so no value is a prefix of another's range,
// and what follows it is the block's catalog position: a scan of one value's
// range visits its blocks in the catalog's order, and positions name the
// flows of the block (in the block's storage order) that hold the value.
//
// Index values are the flow's values as v1alpha1.FieldSet spells them, so
// an equality requirement's value is looked up as is: the index yields
// exactly the flows whose field equals it, which the matcher accepts too.
// Pod names are qualified by their endpoint's namespace, "ns/pod"; a
// namespace holding '/' could make two pods share a value, which only adds
// candidates that the matcher then rejects. Empty values are not indexed, so
// a requirement for an empty value is not answered from an index.

// indexField identifies an index in its keys.
type indexField byte

const (
	idxNamespace      indexField = 1 // metadata.namespace
	idxSourcePod      indexField = 2 // source.namespace "/" source.podName
	idxDestinationPod indexField = 3 // destination.namespace "/" destination.podName
	idxDestPort       indexField = 4 // l4.destinationPort
	idxProtocol       indexField = 5 // l4.protocol
	idxVerdict        indexField = 6 // verdict
	idxDirection      indexField = 7 // trafficDirection
	idxL7Type         indexField = 8 // l7.type
	idxSourceWorkload indexField = 9 // source.workload
	idxDestWorkload   indexField = 10
	idxDNSQuery       indexField = 11 // l7.dns.query
	idxHTTPURL        indexField = 12 // l7.http.url
	idxGRPCMethod     indexField = 13 // l7.grpc.method
	idxKafkaTopic     indexField = 14 // l7.kafka.topic
	numIndexes                   = 14
)

// indexLabels names the indexes by the field selector label they answer.
var indexLabels = [numIndexes + 1]string{
	idxNamespace:      "metadata.namespace",
	idxSourcePod:      "source.podName",
	idxDestinationPod: "destination.podName",
	idxDestPort:       "l4.destinationPort",
	idxProtocol:       "l4.protocol",
	idxVerdict:        "verdict",
	idxDirection:      "trafficDirection",
	idxL7Type:         "l7.type",
	idxSourceWorkload: "source.workload",
	idxDestWorkload:   "destination.workload",
	idxDNSQuery:       "l7.dns.query",
	idxHTTPURL:        "l7.http.url",
	idxGRPCMethod:     "l7.grpc.method",
	idxKafkaTopic:     "l7.kafka.topic",
}

func (f indexField) String() string {
	if f == 0 || int(f) > numIndexes {
		return "index" + strconv.Itoa(int(f))
	}
	return indexLabels[f]
}

// podValue is the value of the pod indexes.
func podValue(namespace, pod string) string { return namespace + "/" + pod }

// indexValues returns the values of f's indexed fields, "" for those not
// indexed. It mirrors v1alpha1.FieldSet (TestIndexValuesMatchFieldSet).
func indexValues(f *v1alpha1.Flow) [numIndexes + 1]string {
	var v [numIndexes + 1]string
	v[idxNamespace] = f.Namespace
	v[idxVerdict] = string(f.Verdict)
	v[idxDirection] = string(f.TrafficDirection)
	if f.L4 != nil {
		v[idxProtocol] = string(f.L4.Protocol)
		if f.L4.SourcePort != 0 || f.L4.DestinationPort != 0 {
			v[idxDestPort] = strconv.Itoa(int(f.L4.DestinationPort))
		}
	}
	if l7 := f.L7; l7 != nil {
		v[idxL7Type] = string(l7.Type)
		if l7.DNS != nil {
			v[idxDNSQuery] = l7.DNS.Query
		}
		if l7.HTTP != nil {
			v[idxHTTPURL] = l7.HTTP.URL
		}
		if l7.GRPC != nil {
			v[idxGRPCMethod] = l7.GRPC.Service + "/" + l7.GRPC.Method
		}
		if l7.Kafka != nil {
			v[idxKafkaTopic] = l7.Kafka.Topic
		}
	}
	if e := f.Source; e != nil {
		if e.PodName != "" {
			v[idxSourcePod] = podValue(e.Namespace, e.PodName)
		}
		if len(e.Workloads) > 0 {
			v[idxSourceWorkload] = e.Workloads[len(e.Workloads)-1].Name
		}
	}
	if e := f.Destination; e != nil {
		if e.PodName != "" {
			v[idxDestinationPod] = podValue(e.Namespace, e.PodName)
		}
		if len(e.Workloads) > 0 {
			v[idxDestWorkload] = e.Workloads[len(e.Workloads)-1].Name
		}
	}
	return v
}

// appendIndexPrefix appends the prefix of one index value's range.
func appendIndexPrefix(b []byte, field indexField, value string) []byte {
	b = append(b, prefixPosting, byte(field))
	b = binary.AppendUvarint(b, uint64(len(value)))
	return append(b, value...)
}

// appendPostingKey appends the key of one value's posting list in the
// block at catalog position (minTime, firstRV).
func appendPostingKey(b []byte, field indexField, value string, minTime int64, firstRV uint64) []byte {
	return appendPosition(appendIndexPrefix(b, field, value), minTime, firstRV)
}

// indexPrefix is the prefix of one index value's range.
func indexPrefix(field indexField, value string) []byte {
	return appendIndexPrefix(make([]byte, 0, 3+len(value)+positionLen), field, value)
}

// positionLen is the length of a list-order position <time:8><rv:8>, the
// suffix of the catalog's and the posting lists' keys.
const positionLen = 16

// appendPosition appends the list-order position <time:8><rv:8>.
func appendPosition(b []byte, ns int64, rv uint64) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(max(ns, 0)))
	return binary.BigEndian.AppendUint64(b, rv)
}

// unixNano is t in nanoseconds, 0 for the zero time and times before 1970:
// list positions are unsigned.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return max(t.UnixNano(), 0)
}
