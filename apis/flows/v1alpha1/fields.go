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
	"destination.service", "l7.type", "l7.http.code", "l7.dns.query",
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
	return t, nil
}

// FieldSet returns the values of a flow's selectable fields. It is what a
// pushed-down field selector is evaluated against.
func FieldSet(f *Flow) fields.Set {
	s := fields.Set{
		"metadata.name":      f.Name,
		"metadata.namespace": f.Namespace,
		"nodeName":           f.NodeName,
		"verdict":            string(f.Verdict),
		"dropReason":         f.DropReason,
		"trafficDirection":   string(f.TrafficDirection),
		"isReply":            "",
		"l4.protocol":        "",
		"l4.sourcePort":      "",
		"l4.destinationPort": "",
		"l7.type":            "",
		"l7.http.code":       "",
		"l7.dns.query":       "",
	}
	if f.IsReply != nil {
		s["isReply"] = strconv.FormatBool(*f.IsReply)
	}
	if f.L4 != nil {
		s["l4.protocol"] = string(f.L4.Protocol)
		if f.L4.SourcePort != 0 || f.L4.DestinationPort != 0 {
			s["l4.sourcePort"] = strconv.Itoa(int(f.L4.SourcePort))
			s["l4.destinationPort"] = strconv.Itoa(int(f.L4.DestinationPort))
		}
	}
	addEndpoint(s, "source.", f.Source)
	addEndpoint(s, "destination.", f.Destination)
	if f.L7 != nil {
		s["l7.type"] = string(f.L7.Type)
		if f.L7.HTTP != nil && f.L7.HTTP.Code != 0 {
			s["l7.http.code"] = strconv.Itoa(int(f.L7.HTTP.Code))
		}
		if f.L7.DNS != nil {
			s["l7.dns.query"] = f.L7.DNS.Query
		}
	}
	return s
}

func addEndpoint(s fields.Set, prefix string, e *Endpoint) {
	if e == nil {
		e = &Endpoint{}
	}
	s[prefix+"namespace"] = e.Namespace
	s[prefix+"podName"] = e.PodName
	s[prefix+"ip"] = e.IP
	s[prefix+"service"] = e.Service
	s[prefix+"workload"] = ""
	if len(e.Workloads) > 0 {
		// The outermost controller (a Deployment rather than its
		// ReplicaSet) is what people name a workload by.
		s[prefix+"workload"] = e.Workloads[len(e.Workloads)-1].Name
	}
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
