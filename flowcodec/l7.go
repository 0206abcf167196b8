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
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

func (e *encoder) layer7(l7 *v1alpha1.Layer7) {
	var bits byte
	var lat int64
	if l7.Latency != nil {
		bits |= l7Latency
		lat = int64(l7.Latency.Duration)
		if lat%1000 == 0 {
			bits |= l7LatencyMicros
			lat /= 1000
		}
	}
	if l7.DNS != nil {
		bits |= l7DNS
	}
	if l7.HTTP != nil {
		bits |= l7HTTP
	}
	if l7.GRPC != nil {
		bits |= l7GRPC
	}
	if l7.Kafka != nil {
		bits |= l7Kafka
		if l7.Kafka.ClientID != "" {
			bits |= l7KafkaClientID
		}
	}
	if l7.Partial {
		bits |= l7Partial
	}
	e.b = append(e.b, bits)
	e.enum(string(l7.Type), l7Types)
	if bits&l7Latency != 0 {
		e.varint(lat)
	}
	if d := l7.DNS; d != nil {
		e.string(d.Query)
		e.uvarint(uint64(len(d.IPs)))
		for _, ip := range d.IPs {
			e.addr(ip, false, "", "")
		}
		e.varint(int64(d.TTL))
		e.strList(d.CNAMEs)
		e.varint(int64(d.RCode))
		e.enums(d.QTypes, dnsTypes)
		e.enums(d.RRTypes, dnsTypes)
	}
	if h := l7.HTTP; h != nil {
		e.varint(int64(h.Code))
		e.enum(h.Method, httpMethods)
		e.string(h.URL)
		e.enum(h.Protocol, httpProtocols)
		e.headers(h.Headers)
		if len(h.ResponseHeaders) > 0 {
			e.headers(h.ResponseHeaders)
		}
	}
	if g := l7.GRPC; g != nil {
		e.string(g.Service)
		e.string(g.Method)
		e.varint(int64(g.StatusCode))
		if g.Message != "" || len(g.ResponseHeaders) > 0 {
			e.string(g.Message)
			e.headers(g.ResponseHeaders)
		}
	}
	if k := l7.Kafka; k != nil {
		e.varint(int64(k.ErrorCode))
		e.varint(int64(k.APIVersion))
		e.enum(k.APIKey, kafkaAPIKeys)
		e.varint(int64(k.CorrelationID))
		e.string(k.Topic)
		if bits&l7KafkaClientID != 0 {
			e.string(k.ClientID)
		}
	}
}

func (e *encoder) headers(hs []v1alpha1.HTTPHeader) {
	e.uvarint(uint64(len(hs)))
	for _, kv := range hs {
		e.string(kv.Key)
		e.string(kv.Value)
	}
}

// layer7 decodes an l7 section; respHeaders: its http section ends with
// the response headers; grpcDetails: its grpc section ends with the
// message and response headers.
func (d *decoder) layer7(l7 *v1alpha1.Layer7, respHeaders, grpcDetails bool) {
	bits := d.byte()
	if bits&^l7All != 0 || bits&(l7Latency|l7LatencyMicros) == l7LatencyMicros ||
		bits&(l7Kafka|l7KafkaClientID) == l7KafkaClientID {
		d.fail("bad l7 bits")
		return
	}
	l7.Type = v1alpha1.L7Type(d.enum(l7Types))
	l7.Partial = bits&l7Partial != 0
	if bits&l7Latency != 0 {
		v := d.varint()
		if bits&l7LatencyMicros != 0 {
			if v > math.MaxInt64/1000 || v < math.MinInt64/1000 {
				d.fail("latency out of range")
				return
			}
			v *= 1000
		} else if v%1000 == 0 {
			d.fail("non-canonical latency")
			return
		}
		l7.Latency = &metav1.Duration{Duration: time.Duration(v)}
	}
	if bits&l7DNS != 0 {
		dns := new(v1alpha1.DNS)
		l7.DNS = dns
		dns.Query = d.string()
		if n := d.count(1); n > 0 {
			dns.IPs = make([]string, n)
			for i := range dns.IPs {
				d.set(&dns.IPs[i], d.addr(false, strRef{}, strRef{}))
			}
		}
		dns.TTL = d.int32()
		dns.CNAMEs = d.strList()
		dns.RCode = d.int32()
		dns.QTypes = d.enumList(dnsTypes)
		dns.RRTypes = d.enumList(dnsTypes)
	}
	if bits&l7HTTP != 0 {
		h := new(v1alpha1.HTTP)
		l7.HTTP = h
		h.Code = d.int32()
		h.Method = d.enum(httpMethods)
		h.URL = d.string()
		h.Protocol = d.enum(httpProtocols)
		h.Headers = d.headers()
		if respHeaders {
			if h.ResponseHeaders = d.headers(); h.ResponseHeaders == nil {
				d.fail("empty response headers")
			}
		}
	} else if respHeaders {
		d.fail("response headers without http")
	}
	if bits&l7GRPC != 0 {
		g := new(v1alpha1.GRPC)
		l7.GRPC = g
		g.Service = d.string()
		g.Method = d.string()
		g.StatusCode = d.int32()
		if grpcDetails {
			g.Message = d.string()
			if g.ResponseHeaders = d.headers(); g.Message == "" && g.ResponseHeaders == nil {
				d.fail("empty grpc details")
			}
		}
	} else if grpcDetails {
		d.fail("grpc details without grpc")
	}
	if bits&l7Kafka != 0 {
		k := new(v1alpha1.Kafka)
		l7.Kafka = k
		k.ErrorCode = d.int32()
		k.APIVersion = d.int32()
		k.APIKey = d.enum(kafkaAPIKeys)
		k.CorrelationID = d.int32()
		k.Topic = d.string()
		if bits&l7KafkaClientID != 0 {
			if k.ClientID = d.string(); k.ClientID == "" {
				d.fail("empty kafka client ID")
			}
		}
	}
}

func (d *decoder) headers() []v1alpha1.HTTPHeader {
	n := d.count(2)
	if n <= 0 {
		return nil
	}
	hs := make([]v1alpha1.HTTPHeader, n)
	for i := range hs {
		hs[i].Key = d.string()
		hs[i].Value = d.string()
	}
	return hs
}
