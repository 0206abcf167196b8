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
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// SummarySelectableFields lists the field selector labels a FlowSummary
// supports. They select the flows that are summarized, with the meaning
// they have for flows (so l4.protocol, not edge.protocol): a summary of
// the flows that `kubectl get flows` would list with the same selectors.
// metadata.name is left out: a summary's name is its edge's, not a flow's.
var SummarySelectableFields = func() []string {
	var out []string
	for _, f := range SelectableFields {
		if f != "metadata.name" {
			out = append(out, f)
		}
	}
	return out
}()

// ConvertSummaryFieldLabel validates a FlowSummary field selector
// requirement as ConvertFieldLabel does for flows.
func ConvertSummaryFieldLabel(label, value string) (string, string, error) {
	if label == "metadata.name" {
		return "", "", fmt.Errorf("field label not supported: %s (supported: %s)", label, strings.Join(SummarySelectableFields, ", "))
	}
	return ConvertFieldLabel(label, value)
}

// EdgeName returns the name of the summary of an edge: "e" and the first
// 16 hexadecimal digits of the SHA-256 of the edge's fields, so that it is
// the same in every window, on every server, and for every client that
// computes it.
func EdgeName(e *FlowEdge) string {
	h := sha256.New()
	for _, s := range []string{
		e.Source.Kind, e.Source.Namespace, e.Source.Name, e.Source.Service,
		e.Destination.Kind, e.Destination.Namespace, e.Destination.Name, e.Destination.Service,
		strconv.Itoa(int(e.DestinationPort)), string(e.Protocol), string(e.Verdict),
		string(e.TrafficDirection), strconv.FormatBool(e.Reply), string(e.L7Type), e.L7Status, strconv.FormatBool(e.Other),
	} {
		// Length-prefixed, so that no two edges write the same bytes.
		fmt.Fprintf(h, "%d:%s;", len(s), s)
	}
	return "e" + hex.EncodeToString(h.Sum(nil)[:8])
}
