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
	"encoding/json"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/selection"
)

// FuzzConvertFieldLabel checks the field label conversion every field
// selector of a request goes through. Properties:
//   - Only selectable labels are accepted, and the label comes back as
//     given; an error names the label.
//   - The value it returns is canonical: converting it again returns it
//     unchanged, without error.
//   - The canonical value parses back: label=EscapeValue(value) and
//     label!=EscapeValue(value) are field selectors of exactly that one
//     requirement (of that value, up to apimachinery's treatment of
//     invalid UTF-8: see unescaped).
//   - Per kind: an enum value is a declared one that case-folds to the
//     input; ports and codes are plain decimals in range, numerically the
//     input; an address is the input's address; a boolean is true or
//     false; other values (names, since, until) come back unchanged.
func FuzzConvertFieldLabel(f *testing.F) {
	for _, label := range SelectableFields {
		for _, value := range []string{"", "x", "0", "1", "80", "0080", "65535", "65536", "999", "1000", "-1", "+1",
			"0x50", "1_000", "TRUE", "t", "dropped", "DROPPED", "Dropped", "tcp", "\u017fctp", "dns",
			"10.0.0.1", "fd00::0001", "::ffff:10.0.0.1", "fe80::1%eth0", "fe80::1%a,b=c\\", "010.0.0.1",
			"1h", "90s", "-5m", "0s", "2026-01-02T15:04:05Z", "2026-01-02T15:04:05.123456789+02:00",
			"node-a.1712345678901234", "a,b", "a=b", "a\\b", "\x00", "\u1e9e"} {
			f.Add(label, value)
		}
	}
	f.Add("spec.bogus", "x")
	f.Add("", "")
	f.Add("Verdict", "Dropped")
	f.Add("verdict ", "Dropped")
	f.Fuzz(func(t *testing.T, label, value string) {
		gotLabel, got, err := ConvertFieldLabel(label, value)
		if !slices.Contains(SelectableFields, label) {
			if err == nil {
				t.Fatalf("ConvertFieldLabel accepted the unknown label %q", label)
			}
			if !strings.Contains(err.Error(), "field label not supported: "+label) {
				t.Fatalf("error %q does not name the label %q", err, label)
			}
			return
		}
		if err != nil {
			if !strings.Contains(err.Error(), "for field selector "+label) {
				t.Fatalf("error %q does not name the label %q", err, label)
			}
			return
		}
		if gotLabel != label {
			t.Fatalf("label %q came back as %q", label, gotLabel)
		}
		if l2, v2, err := ConvertFieldLabel(label, got); err != nil || l2 != label || v2 != got {
			t.Fatalf("%s=%q converts to %q, which converts to %q, %q, %v", label, value, got, l2, v2, err)
		}
		for _, op := range []string{"=", "!="} {
			sel := label + op + fields.EscapeValue(got)
			parsed, err := fields.ParseSelector(sel)
			if err != nil {
				t.Fatalf("%q does not parse: %v", sel, err)
			}
			reqs := parsed.Requirements()
			wantOp := selection.Equals
			if op == "!=" {
				wantOp = selection.NotEquals
			}
			if len(reqs) != 1 || reqs[0].Field != label || reqs[0].Operator != wantOp || reqs[0].Value != unescaped(got) {
				t.Fatalf("%q parses as %+v", sel, reqs)
			}
		}
		switch label {
		case "verdict":
			checkEnum(t, value, got, Verdicts)
		case "trafficDirection":
			checkEnum(t, value, got, TrafficDirections)
		case "l4.protocol":
			checkEnum(t, value, got, Protocols)
		case "l7.type":
			checkEnum(t, value, got, L7Types)
		case "isReply":
			want, err := strconv.ParseBool(value)
			if err != nil || got != strconv.FormatBool(want) {
				t.Fatalf("isReply=%q converts to %q", value, got)
			}
		case "l7.http.method":
			// Exactly upper-cased, which EqualFold would not check.
			if upper := strings.ToUpper(value); got != upper {
				t.Fatalf("%s=%q converts to %q, want %q", label, value, got, upper)
			}
		case "l4.sourcePort", "l4.destinationPort", "l7.http.code", "l7.dns.rcode":
			in, err1 := strconv.ParseUint(value, 10, 64)
			out, err2 := strconv.ParseUint(got, 10, 64)
			highest := map[string]uint64{"l7.http.code": 999, "l7.dns.rcode": 4095}[label]
			if highest == 0 {
				highest = 65535
			}
			if err1 != nil || err2 != nil || in != out || out > highest || strconv.FormatUint(out, 10) != got {
				t.Fatalf("%s=%q converts to %q", label, value, got)
			}
		case "source.ip", "destination.ip":
			if value == "" {
				if got != "" {
					t.Fatalf("%s=\"\" converts to %q", label, got)
				}
				break
			}
			in, err1 := netip.ParseAddr(value)
			out, err2 := netip.ParseAddr(got)
			if err1 != nil || err2 != nil || in != out || out.String() != got {
				t.Fatalf("%s=%q converts to %q", label, value, got)
			}
		default:
			if got != value {
				t.Fatalf("%s=%q converts to %q; free values must come back unchanged", label, value, got)
			}
		}
		if label == FieldSince || label == FieldUntil {
			if _, err := ParseTimeBound(got, time.Now()); err != nil {
				t.Fatalf("%s=%q accepted, but ParseTimeBound refuses it: %v", label, got, err)
			}
		}
	})
}

// unescaped is what fields.ParseSelector makes of EscapeValue(v): v, except
// that apimachinery's UnescapeValue, which copies rune by rune once a value
// holds \, , or =, turns each byte of invalid UTF-8 into U+FFFD. The
// server's re-encoding survives this: a value that holds those characters
// has already been through UnescapeValue when the request was parsed.
func unescaped(v string) string {
	if !strings.ContainsAny(v, `\,=`) {
		return v
	}
	var b strings.Builder
	for _, r := range v {
		b.WriteRune(r)
	}
	return b.String()
}

func checkEnum[T ~string](t *testing.T, value, got string, values []T) {
	t.Helper()
	if !slices.Contains(values, T(got)) || !strings.EqualFold(value, got) {
		t.Fatalf("%q converts to %q, not a declared value it folds to", value, got)
	}
}

// FuzzParseTimeBound checks since and until values. Properties:
//   - A non-negative Go duration d is accepted and gives now - d: never
//     after now, and now for 0; a negative one is refused.
//   - Any RFC 3339 time is accepted; ParseTimeBound may accept more of what
//     time.Parse does (single-digit hours), but then gives what it gives.
//     Nothing else is accepted.
//   - An absolute time does not depend on now, and can travel: it
//     marshals to JSON and back (registry/flow's continue token carries
//     the bounds as JSON) and formats as RFC 3339 to a value that parses
//     back, each to the same instant.
//   - What ParseTimeBound accepts, ConvertFieldLabel accepts for since and
//     until, unchanged.
func FuzzParseTimeBound(f *testing.F) {
	for _, v := range []string{"1h", "90s", "1h30m", "1.5h", ".5s", "0", "0s", "-0s", "-5m", "+5m", "5", "1d",
		"2562047h", "2562048h", "9223372036854775807ns", "1µs", "1us",
		"2026-01-02T15:04:05Z", "2026-01-02T15:04:05.123456789Z", "2026-01-02T15:04:05,5Z",
		"2026-01-02T15:04:05+02:00", "2026-01-02T15:04:05-23:59", "2026-01-02T15:04:05+24:00",
		"2026-01-02t15:04:05z", "2026-01-02 15:04:05Z", "2026-01-02T1:04:05Z", "0000-01-01T00:00:00Z",
		"0000-01-01T00:00:00+01:00", "9999-12-31T23:59:59.999999999Z", "9999-12-31T23:59:59-01:00",
		"2026-02-30T00:00:00Z", "2026-01-02T24:00:00Z", "2026-01-02T15:04:60Z", "2026-01-02", "yesterday", ""} {
		f.Add(v, int64(1772442000)*1e9)
		f.Add(v, int64(0))
	}
	f.Fuzz(func(t *testing.T, value string, nowNanos int64) {
		now := time.Unix(0, nowNanos).UTC()
		got, err := ParseTimeBound(value, now)
		d, derr := time.ParseDuration(value)
		lenient, lerr := time.Parse(time.RFC3339Nano, value)
		var strict time.Time
		serr := strict.UnmarshalText([]byte(value)) // RFC 3339 to the letter
		switch {
		case derr == nil && d < 0:
			if err == nil {
				t.Fatalf("negative duration %q accepted: %v", value, got)
			}
			return
		case derr == nil:
			if err != nil || !got.Equal(now.Add(-d)) || got.After(now) {
				t.Fatalf("duration %q at %v gives %v, %v; want %v", value, now, got, err, now.Add(-d))
			}
		case lerr == nil:
			if err != nil {
				// Refused is right only for what RFC 3339 or JSON refuse.
				if _, merr := strict.MarshalText(); serr == nil && merr == nil {
					t.Fatalf("RFC 3339 time %q refused: %v", value, err)
				}
				return
			}
			if !got.Equal(lenient) {
				t.Fatalf("time %q gives %v; want %v", value, got, lenient)
			}
			if other, err := ParseTimeBound(value, now.Add(time.Hour)); err != nil || !other.Equal(got) {
				t.Fatalf("time %q depends on now: %v vs %v (%v)", value, got, other, err)
			}
			raw, jerr := json.Marshal(got)
			var back time.Time
			if jerr != nil || json.Unmarshal(raw, &back) != nil || !back.Equal(got) {
				t.Fatalf("time %q gives %v, which does not travel as JSON: %s, %v -> %v", value, got, raw, jerr, back)
			}
			again, err := ParseTimeBound(got.Format(time.RFC3339Nano), now)
			if err != nil || !again.Equal(got) {
				t.Fatalf("time %q gives %v, whose RFC 3339 form %q gives %v, %v", value, got, got.Format(time.RFC3339Nano), again, err)
			}
		default:
			if err == nil {
				t.Fatalf("%q is neither a duration nor a time, but gives %v", value, got)
			}
			return
		}
		for _, label := range []string{FieldSince, FieldUntil} {
			if l, v, err := ConvertFieldLabel(label, value); err != nil || l != label || v != value {
				t.Fatalf("ParseTimeBound accepts %q, ConvertFieldLabel(%s) gives %q, %q, %v", value, label, l, v, err)
			}
		}
	})
}
