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

package reflectparse

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// object is one decoded JSON object of a line, with the dotted path that led
// to it for error messages. Fields are looked up by exact name, as protojson
// does, under each spelling protojson accepts (the proto name and the
// lowerCamelCase JSON name).
type object struct {
	path   string
	fields map[string]json.RawMessage
}

// decoder collects the first error found while reading a line, so the
// mapping code reads as a sequence of lookups instead of error plumbing.
type decoder struct {
	err error
}

func (d *decoder) failf(path, format string, args ...any) {
	if d.err == nil {
		if path == "" {
			d.err = malformed(format, args...)
			return
		}
		d.err = malformed("%s: %s", path, fmt.Sprintf(format, args...))
	}
}

// decodeObject decodes raw, which must be a JSON object or null (protojson's
// spelling of an unset message).
func (d *decoder) decodeObject(path string, raw json.RawMessage) (object, bool) {
	o := object{path: path}
	if isNull(raw) {
		return o, false
	}
	if len(raw) == 0 || raw[0] != '{' {
		d.failf(path, "want an object, got %s", kindOf(raw))
		return o, false
	}
	if err := json.Unmarshal(raw, &o.fields); err != nil {
		d.failf(path, "invalid JSON: %v", err)
		return o, false
	}
	return o, true
}

// get returns the first non-null field among names and the name it was
// found under.
func (o object) get(names ...string) (json.RawMessage, string, bool) {
	for _, n := range names {
		if raw, ok := o.fields[n]; ok && !isNull(raw) {
			return raw, n, true
		}
	}
	return nil, "", false
}

func (o object) has(names ...string) bool {
	_, _, ok := o.get(names...)
	return ok
}

func (o object) child(name string) string {
	if o.path == "" {
		return name
	}
	return o.path + "." + name
}

func (d *decoder) object(o object, names ...string) (object, bool) {
	raw, name, ok := o.get(names...)
	if !ok {
		return object{path: o.child(names[0])}, false
	}
	return d.decodeObject(o.child(name), raw)
}

func (d *decoder) objects(o object, names ...string) []object {
	raw, name, ok := o.get(names...)
	if !ok {
		return nil
	}
	path := o.child(name)
	var items []json.RawMessage
	if !d.array(path, raw, &items) {
		return nil
	}
	out := make([]object, 0, len(items))
	for i, item := range items {
		if c, ok := d.decodeObject(fmt.Sprintf("%s[%d]", path, i), item); ok {
			out = append(out, c)
		}
	}
	return out
}

func (d *decoder) array(path string, raw json.RawMessage, into *[]json.RawMessage) bool {
	if raw[0] != '[' {
		d.failf(path, "want a list, got %s", kindOf(raw))
		return false
	}
	if err := json.Unmarshal(raw, into); err != nil {
		d.failf(path, "%v", err)
		return false
	}
	return true
}

func (d *decoder) str(o object, names ...string) string {
	raw, name, ok := o.get(names...)
	if !ok {
		return ""
	}
	return d.stringValue(o.child(name), raw)
}

func (d *decoder) stringValue(path string, raw json.RawMessage) string {
	if raw[0] != '"' {
		d.failf(path, "want a string, got %s", kindOf(raw))
		return ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		d.failf(path, "%v", err)
	}
	return s
}

func (d *decoder) strs(o object, names ...string) []string {
	raw, name, ok := o.get(names...)
	if !ok {
		return nil
	}
	path := o.child(name)
	var items []json.RawMessage
	if !d.array(path, raw, &items) || len(items) == 0 {
		return nil
	}
	out := make([]string, 0, len(items))
	for i, item := range items {
		if isNull(item) {
			d.failf(fmt.Sprintf("%s[%d]", path, i), "want a string, got null")
			return nil
		}
		out = append(out, d.stringValue(fmt.Sprintf("%s[%d]", path, i), item))
	}
	return out
}

func (d *decoder) boolean(o object, names ...string) (value, present bool) {
	raw, name, ok := o.get(names...)
	if !ok {
		return false, false
	}
	switch string(raw) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	d.failf(o.child(name), "want a bool, got %s", kindOf(raw))
	return false, false
}

// integer reads an integer field within [lo, hi]. protojson writes 64-bit
// integers as strings and accepts both forms for every integer type, and
// accepts exponents and fractions when the value is integral.
func (d *decoder) integer(o object, lo, hi int64, names ...string) (int64, bool) {
	raw, name, ok := o.get(names...)
	if !ok {
		return 0, false
	}
	v, err := parseInteger(raw, lo, hi)
	if err != nil {
		d.failf(o.child(name), "%v", err)
		return 0, false
	}
	return v, true
}

// unsigned is integer for uint64 fields, whose range exceeds int64.
func (d *decoder) unsigned(o object, names ...string) (uint64, bool) {
	raw, name, ok := o.get(names...)
	if !ok {
		return 0, false
	}
	lit, err := numberLiteral(raw)
	if err == nil {
		var v uint64
		if v, err = strconv.ParseUint(lit, 10, 64); err == nil {
			return v, true
		}
		var i int64
		if i, err = parseInteger(raw, 0, math.MaxInt64); err == nil {
			return uint64(i), true
		}
	}
	d.failf(o.child(name), "%v", err)
	return 0, false
}

func parseInteger(raw json.RawMessage, lo, hi int64) (int64, error) {
	lit, err := numberLiteral(raw)
	if err != nil {
		return 0, err
	}
	if v, err := strconv.ParseInt(lit, 10, 64); err == nil {
		if v < lo || v > hi {
			return 0, fmt.Errorf("%d is out of range [%d, %d]", v, lo, hi)
		}
		return v, nil
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%.40q is not a number", lit)
	}
	if f != math.Trunc(f) {
		return 0, fmt.Errorf("%.40q is not an integer", lit)
	}
	// float64(hi) may round up past hi; compare with that in mind.
	if f < float64(lo) || f > float64(hi) || (hi == math.MaxInt64 && f >= math.MaxInt64) {
		return 0, fmt.Errorf("%.40q is out of range [%d, %d]", lit, lo, hi)
	}
	return int64(f), nil
}

// numberLiteral returns the text of a JSON number, or of a string holding
// one.
func numberLiteral(raw json.RawMessage) (string, error) {
	switch {
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", err
		}
		if s == "" || strings.TrimSpace(s) != s {
			return "", fmt.Errorf("%.40q is not a number", s)
		}
		return s, nil
	case raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9'):
		return string(raw), nil
	}
	return "", fmt.Errorf("want a number, got %s", kindOf(raw))
}

// enum reads an enum field, written by protojson as its value name or, for
// values the writer did not know, its number. It returns the name when the
// number is in table or a name was given, else the number's decimal text.
func (d *decoder) enum(o object, table map[int64]string, names ...string) (string, bool) {
	raw, name, ok := o.get(names...)
	if !ok {
		return "", false
	}
	if raw[0] == '"' {
		s := d.stringValue(o.child(name), raw)
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return s, true
		}
		if name, ok := table[n]; ok {
			return name, true
		}
		return strconv.FormatInt(n, 10), true
	}
	n, err := parseInteger(raw, math.MinInt32, math.MaxInt32)
	if err != nil {
		d.failf(o.child(name), "%v", err)
		return "", false
	}
	if s, ok := table[n]; ok {
		return s, true
	}
	return strconv.FormatInt(n, 10), true
}

func isNull(raw json.RawMessage) bool {
	return bytes.Equal(raw, []byte("null"))
}

func kindOf(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "a list"
	case '"':
		return "a string"
	case 't', 'f':
		return "a bool"
	case 'n':
		return "null"
	}
	return "a number"
}
