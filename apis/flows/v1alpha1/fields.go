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

package v1alpha1

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/fields"
)

// Field selector labels that are not fields of a Flow but bounds on its
// time. Each takes a duration before now ("90s", "1h") or an RFC 3339 time.
const (
	FieldSince = "since"
	FieldUntil = "until"
)

// SelectableFields lists every field selector label a Flow supports, in the
// order the error for an unknown label names them.
var SelectableFields = []string{
	"metadata.name", "metadata.namespace", "nodeName", "verdict", "dropReason",
	"trafficDirection", "isReply", "l4.protocol", "l4.sourcePort", "l4.destinationPort",
	"source.namespace", "source.podName", "source.ip", "source.workload", "source.service",
	"destination.namespace", "destination.podName", "destination.ip", "destination.workload",
	"destination.service", "l7.type", "l7.http.code", "l7.http.method", "l7.http.url",
	"l7.dns.query", "l7.dns.rcode", "l7.grpc.method", "l7.kafka.topic", "l7.kafka.apiKey",
	FieldSince, FieldUntil,
}

var selectable = func() map[string]bool {
	m := make(map[string]bool, len(SelectableFields))
	for _, f := range SelectableFields {
		m[f] = true
	}
	return m
}()

// ConvertFieldLabel validates a field selector requirement and returns it in
// canonical form: enum values in their declared case, ports and codes as
// plain decimals. Its errors reach the user as 400 Bad Request.
func ConvertFieldLabel(label, value string) (string, string, error) {
	if !selectable[label] {
		return "", "", fmt.Errorf("field label not supported: %s (supported: %s)", label, strings.Join(SelectableFields, ", "))
	}
	bad := func(format string, args ...any) (string, string, error) {
		return "", "", fmt.Errorf("invalid value %q for field selector %s: %s", value, label, fmt.Sprintf(format, args...))
	}
	switch label {
	case "verdict":
		if v, ok := canonicalEnum(value, Verdicts); ok {
			return label, v, nil
		}
		return bad("must be one of %s", joinEnum(Verdicts))
	case "trafficDirection":
		if v, ok := canonicalEnum(value, TrafficDirections); ok {
			return label, v, nil
		}
		return bad("must be one of %s", joinEnum(TrafficDirections))
	case "l4.protocol":
		if v, ok := canonicalEnum(value, Protocols); ok {
			return label, v, nil
		}
		return bad("must be one of %s", joinEnum(Protocols))
	case "l7.type":
		if v, ok := canonicalEnum(value, L7Types); ok {
			return label, v, nil
		}
		return bad("must be one of %s", joinEnum(L7Types))
	case "isReply":
		b, err := strconv.ParseBool(value)
		if err != nil {
			return bad("must be true or false")
		}
		return label, strconv.FormatBool(b), nil
	case "l4.sourcePort", "l4.destinationPort":
		n, err := strconv.ParseUint(value, 10, 16)
		if err != nil {
			return bad("must be a port number from 0 to 65535")
		}
		return label, strconv.FormatUint(n, 10), nil
	case "l7.http.code":
		n, err := strconv.ParseUint(value, 10, 16)
		if err != nil || n > 999 {
			return bad("must be an HTTP status code")
		}
		return label, strconv.FormatUint(n, 10), nil
	case "l7.dns.rcode":
		n, err := strconv.ParseUint(value, 10, 16)
		if err != nil || n > 4095 {
			return bad("must be a DNS response code, 0 to 4095 (NOERROR is 0, NXDOMAIN 3)")
		}
		return label, strconv.FormatUint(n, 10), nil
	case "l7.http.method":
		return label, strings.ToUpper(value), nil
	case "source.ip", "destination.ip":
		if value == "" {
			return label, value, nil
		}
		a, err := netip.ParseAddr(value)
		if err != nil {
			return bad("must be an IP address")
		}
		return label, a.String(), nil
	case FieldSince, FieldUntil:
		if _, err := ParseTimeBound(value, time.Now()); err != nil {
			return bad("%v", err)
		}
	}
	return label, value, nil
}

// ParseTimeBound reads a since/until value: a duration before now, or an
// RFC 3339 time.
func ParseTimeBound(value string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(value); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("duration must not be negative")
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, value)
	if err != nil {
		return time.Time{}, fmt.Errorf("must be a duration such as 90s or 1h, or an RFC 3339 time such as 2026-01-02T15:04:05Z")
	}
	// time.Parse takes offsets of 24 hours or more, which time.Time cannot
	// marshal: no continue token could then carry the bound.
	if _, err := t.MarshalText(); err != nil {
		return time.Time{}, fmt.Errorf("must be an RFC 3339 time with an offset within ±23:59: %w", err)
	}
	return t, nil
}

// FieldSet returns the values of a flow's selectable fields. It is what a
// pushed-down field selector is evaluated against.
func FieldSet(f *Flow) fields.Set {
	s := make(fields.Set, len(fieldGetters))
	for label, get := range fieldGetters {
		s[label] = get(f)
	}
	return s
}

// FieldGetter returns the function that reads a selectable field of a
// flow, as FieldSet has it, or nil for since, until and unknown labels.
// Matching a selector through getters costs no map per flow.
func FieldGetter(label string) func(*Flow) string { return fieldGetters[label] }

var fieldGetters = map[string]func(*Flow) string{
	"metadata.name":      func(f *Flow) string { return f.Name },
	"metadata.namespace": func(f *Flow) string { return f.Namespace },
	"nodeName":           func(f *Flow) string { return f.NodeName },
	"verdict":            func(f *Flow) string { return string(f.Verdict) },
	"dropReason":         func(f *Flow) string { return f.DropReason },
	"trafficDirection":   func(f *Flow) string { return string(f.TrafficDirection) },
	"isReply": func(f *Flow) string {
		if f.IsReply == nil {
			return ""
		}
		return strconv.FormatBool(*f.IsReply)
	},
	"l4.protocol": func(f *Flow) string {
		if f.L4 == nil {
			return ""
		}
		return string(f.L4.Protocol)
	},
	"l4.sourcePort":      func(f *Flow) string { return port(f, func(l *Layer4) int32 { return l.SourcePort }) },
	"l4.destinationPort": func(f *Flow) string { return port(f, func(l *Layer4) int32 { return l.DestinationPort }) },
	"source.namespace":   func(f *Flow) string { return endpointOrEmpty(f.Source).Namespace },
	"source.podName":     func(f *Flow) string { return endpointOrEmpty(f.Source).PodName },
	"source.ip":          func(f *Flow) string { return endpointOrEmpty(f.Source).IP },
	"source.service":     func(f *Flow) string { return endpointOrEmpty(f.Source).Service },
	"source.workload":    func(f *Flow) string { return workload(f.Source) },
	"destination.namespace": func(f *Flow) string {
		return endpointOrEmpty(f.Destination).Namespace
	},
	"destination.podName": func(f *Flow) string { return endpointOrEmpty(f.Destination).PodName },
	"destination.ip":      func(f *Flow) string { return endpointOrEmpty(f.Destination).IP },
	"destination.service": func(f *Flow) string { return endpointOrEmpty(f.Destination).Service },
	"destination.workload": func(f *Flow) string {
		return workload(f.Destination)
	},
	"l7.type": func(f *Flow) string {
		if f.L7 == nil {
			return ""
		}
		return string(f.L7.Type)
	},
	"l7.http.code": func(f *Flow) string {
		if f.L7 == nil || f.L7.HTTP == nil || f.L7.HTTP.Code == 0 {
			return ""
		}
		return strconv.Itoa(int(f.L7.HTTP.Code))
	},
	"l7.dns.query": func(f *Flow) string {
		if f.L7 == nil || f.L7.DNS == nil {
			return ""
		}
		return f.L7.DNS.Query
	},
	// A DNS record without a response (a timeout) has no rcode: "".
	"l7.dns.rcode": func(f *Flow) string {
		if f.L7 == nil || f.L7.DNS == nil || f.L7.DNS.RCode < 0 {
			return ""
		}
		return strconv.Itoa(int(f.L7.DNS.RCode))
	},
	"l7.http.method": func(f *Flow) string {
		if f.L7 == nil || f.L7.HTTP == nil {
			return ""
		}
		return f.L7.HTTP.Method
	},
	"l7.http.url": func(f *Flow) string {
		if f.L7 == nil || f.L7.HTTP == nil {
			return ""
		}
		return f.L7.HTTP.URL
	},
	"l7.grpc.method": func(f *Flow) string {
		if f.L7 == nil || f.L7.GRPC == nil {
			return ""
		}
		return f.L7.GRPC.Service + "/" + f.L7.GRPC.Method
	},
	"l7.kafka.topic": func(f *Flow) string {
		if f.L7 == nil || f.L7.Kafka == nil {
			return ""
		}
		return f.L7.Kafka.Topic
	},
	"l7.kafka.apiKey": func(f *Flow) string {
		if f.L7 == nil || f.L7.Kafka == nil {
			return ""
		}
		return f.L7.Kafka.APIKey
	},
}

// port reads a port of the flow's L4, "" when it has none (both zero).
func port(f *Flow, which func(*Layer4) int32) string {
	if f.L4 == nil || f.L4.SourcePort == 0 && f.L4.DestinationPort == 0 {
		return ""
	}
	return strconv.Itoa(int(which(f.L4)))
}

var emptyEndpoint Endpoint

func endpointOrEmpty(e *Endpoint) *Endpoint {
	if e == nil {
		return &emptyEndpoint
	}
	return e
}

// workload is the outermost controller (a Deployment rather than its
// ReplicaSet): what people name a workload by.
func workload(e *Endpoint) string {
	if e == nil || len(e.Workloads) == 0 {
		return ""
	}
	return e.Workloads[len(e.Workloads)-1].Name
}

func canonicalEnum[T ~string](value string, values []T) (string, bool) {
	for _, v := range values {
		if strings.EqualFold(value, string(v)) {
			return string(v), true
		}
	}
	return "", false
}

func joinEnum[T ~string](values []T) string {
	s := make([]string, len(values))
	for i, v := range values {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}
