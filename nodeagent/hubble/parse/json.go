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

package parse

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
)

// object is one JSON object of a line, with the dotted path that led to it
// for error messages. Fields are looked up by exact name, as protojson does,
// under each spelling protojson accepts (the proto name and the
// lowerCamelCase JSON name). A name given twice means its last value, as
// encoding/json decoding into a map does.
type object struct {
	// d and node name the object's path, built only for an error message:
	// node is one more than its index in d.paths, 0 for the line itself.
	d      *decoder
	node   int32
	fields []member
}

// pathNode is a step of an object's path: a member's name, and for an item
// of a list its index.
type pathNode struct {
	parent int32
	index  int32 // -1 for a member that is not in a list
	name   string
}

// decoder reads the values of one line that scan has indexed, and
// collects the first error found, so the mapping code reads as a sequence
// of lookups instead of error plumbing.
type decoder struct {
	// members holds the members of every object and array of the line,
	// which values index.
	members []member
	paths   []pathNode
	err     error
	scanner *scanner
}

// scanners keep their buffers from line to line: a line's index is garbage
// as soon as its flow is made, since every string is copied out of it.
var scanners = sync.Pool{New: func() any { return new(scanner) }}

// newDecoder returns a decoder, with its scanner, from the pool.
func newDecoder() *decoder {
	s := scanners.Get().(*scanner)
	s.decoder = decoder{scanner: s}
	return &s.decoder
}

// release hands the decoder and its scanner back once the line's values
// are read; d must not be used after.
func (d *decoder) release() {
	s := d.scanner
	s.paths = d.paths
	*d = decoder{}
	if cap(s.members) > 1<<12 || cap(s.stack) > 1<<12 || cap(s.paths) > 1<<12 || cap(s.keys) > 1<<12 || cap(s.objects) > 1<<12 || cap(s.strs) > 1<<12 {
		return // a hostile line's; let it go
	}
	clear(s.paths[:cap(s.paths)]) // keep no line alive
	clear(s.objects[:cap(s.objects)])
	clear(s.strs[:cap(s.strs)])
	s.paths, s.objects = s.paths[:0], s.objects[:0]
	s.data = nil
	scanners.Put(s)
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

// decodeLine indexes line, which must be a JSON object, in one pass. Its
// syntax errors are encoding/json's, word for word: the scanner only says
// whether the line is valid, and encoding/json explains why not, which
// costs nothing on the lines that are.
func (d *decoder) decodeLine(line []byte) (object, bool) {
	s := d.scanner
	s.data, s.pos, s.depth = line, 0, 0
	s.stack, s.members, s.keys = s.stack[:0], s.members[:0], s.keys[:0]
	d.paths = s.paths[:0]
	v, ok := s.document()
	if !ok {
		var fields map[string]json.RawMessage
		err := json.Unmarshal(line, &fields)
		if err == nil {
			// The scanner and encoding/json disagree: a bug, caught by
			// FuzzExportLineDifferential. Refuse the line all the same.
			err = fmt.Errorf("not accepted by the scanner at offset %d", s.pos)
		}
		d.failf("", "invalid JSON: %v", err)
		return object{}, false
	}
	d.members = s.members
	return d.decodeObject(0, v)
}

// at returns the object named name (index >= 0: the item of that list) in
// the object at node parent, without fields.
func (d *decoder) at(parent int32, name string, index int) object {
	d.paths = append(d.paths, pathNode{parent: parent, index: int32(index), name: name})
	return object{d: d, node: int32(len(d.paths))}
}

// path is the dotted path that led to o, for error messages.
func (o object) path() string {
	if o.node == 0 {
		return ""
	}
	n := o.d.paths[o.node-1]
	p := n.name
	if parent := (object{d: o.d, node: n.parent}).path(); parent != "" {
		p = parent + "." + p
	}
	if n.index >= 0 {
		p = indexPath(p, int(n.index))
	}
	return p
}

// decodeObject reads v, which must be a JSON object or null (protojson's
// spelling of an unset message), as the object at o's path.
func (d *decoder) decodeObject(node int32, v value) (object, bool) {
	o := object{d: d, node: node}
	if isNull(v.raw) {
		return o, false
	}
	if v.raw[0] != '{' {
		d.failf(o.path(), "want an object, got %s", kindOf(v.raw))
		return o, false
	}
	o.fields = d.members[v.first : v.first+v.n]
	return o, true
}

// key returns the name of m, a member of an object.
func (d *decoder) key(m *member) []byte {
	if m.escapedKey {
		return d.scanner.keys[m.keyStart:m.keyEnd]
	}
	return d.scanner.data[m.keyStart:m.keyEnd]
}

// value returns the value of m.
func (d *decoder) value(m *member) value {
	return value{raw: d.scanner.data[m.start:m.end], first: int(m.first), n: int(m.n)}
}

// get returns the first non-null field among names and the name it was
// found under.
func (o object) get(names ...string) (value, string, bool) {
	for _, n := range names {
		for i := len(o.fields) - 1; i >= 0; i-- {
			// Lengths differ for most names: compare them first.
			if m := &o.fields[i]; int(m.keyEnd-m.keyStart) == len(n) && string(o.d.key(m)) == n {
				if v := o.d.value(m); !isNull(v.raw) {
					return v, n, true
				}
				break
			}
		}
	}
	return value{}, "", false
}

func (o object) has(names ...string) bool {
	_, _, ok := o.get(names...)
	return ok
}

func (o object) child(name string) string {
	p := o.path()
	if p == "" {
		return name
	}
	return p + "." + name
}

func (d *decoder) object(o object, names ...string) (object, bool) {
	v, name, ok := o.get(names...)
	if !ok {
		// No error names a missing object: spare its path.
		return object{}, false
	}
	return d.decodeObject(d.at(o.node, name, -1).node, v)
}

func (d *decoder) objects(o object, names ...string) []object {
	v, name, ok := o.get(names...)
	if !ok {
		return nil
	}
	items, ok := d.array(o, name, v)
	if !ok {
		return nil
	}
	// The list is read before the next one is asked for: the scanner's
	// buffer holds it.
	out := d.scanner.objects[:0]
	for i, item := range items {
		if c, ok := d.decodeObject(d.at(o.node, name, i).node, d.value(&item)); ok {
			out = append(out, c)
		}
	}
	d.scanner.objects = out
	return out
}

func indexPath(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

func (d *decoder) array(o object, name string, v value) ([]member, bool) {
	if v.raw[0] != '[' {
		d.failf(o.child(name), "want a list, got %s", kindOf(v.raw))
		return nil, false
	}
	return d.members[v.first : v.first+v.n], true
}

// text returns the text of the string field among names, a window on the
// line when it holds no escapes.
func (d *decoder) text(o object, names ...string) []byte {
	v, name, ok := o.get(names...)
	if !ok {
		return nil
	}
	if v.raw[0] != '"' {
		d.failf(o.child(name), "want a string, got %s", kindOf(v.raw))
		return nil
	}
	return unquote(v.raw)
}

func (d *decoder) str(o object, names ...string) string {
	return string(d.text(o, names...))
}

// name is str for the fields whose values repeat from flow to flow, such
// as namespaces and pod names: it interns them.
func (d *decoder) name(o object, names ...string) string {
	return d.intern(d.text(o, names...))
}

// Interned strings are at most internLen bytes, and a scanner keeps at most
// internEntries of them (and of addresses), forgetting them all when full,
// so that lines of distinct names cost a bounded amount of memory.
const (
	internLen     = 128
	internEntries = 2048
)

// intern returns b as a string, the same string for the same text as long
// as the scanner remembers it: names, labels and enum values repeat, and
// their allocations were most of a line's.
func (d *decoder) intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	s := d.scanner
	if len(b) > internLen {
		return string(b)
	}
	if v, ok := s.strings[string(b)]; ok {
		return v
	}
	if s.strings == nil || len(s.strings) >= internEntries {
		s.strings = make(map[string]string, 256)
	}
	v := string(b)
	s.strings[v] = v
	return v
}

func (d *decoder) strs(o object, names ...string) []string {
	return d.appendStrs(nil, o, names...)
}

// tempStrs is strs into a buffer of the scanner's, for a list read before
// the next one is asked for (pod labels, which become a map).
func (d *decoder) tempStrs(o object, names ...string) []string {
	out := d.appendStrs(d.scanner.strs[:0], o, names...)
	if out != nil {
		d.scanner.strs = out
	}
	return out
}

func (d *decoder) appendStrs(out []string, o object, names ...string) []string {
	v, name, ok := o.get(names...)
	if !ok {
		return nil
	}
	items, ok := d.array(o, name, v)
	if !ok || len(items) == 0 {
		return nil
	}
	if out == nil {
		out = make([]string, 0, len(items))
	}
	for i, item := range items {
		raw := d.value(&item).raw
		if raw[0] != '"' {
			d.failf(indexPath(o.child(name), i), "want a string, got %s", kindOf(raw))
			return nil
		}
		out = append(out, d.intern(unquote(raw)))
	}
	return out
}

func (d *decoder) boolean(o object, names ...string) (value, present bool) {
	v, name, ok := o.get(names...)
	if !ok {
		return false, false
	}
	switch string(v.raw) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	d.failf(o.child(name), "want a bool, got %s", kindOf(v.raw))
	return false, false
}

// integer reads an integer field within [lo, hi]. protojson writes 64-bit
// integers as strings and accepts both forms for every integer type, and
// accepts exponents and fractions when the value is integral.
func (d *decoder) integer(o object, lo, hi int64, names ...string) (int64, bool) {
	v, name, ok := o.get(names...)
	if !ok {
		return 0, false
	}
	n, err := parseInteger(v.raw, lo, hi)
	if err != nil {
		d.failf(o.child(name), "%v", err)
		return 0, false
	}
	return n, true
}

// unsigned is integer for uint64 fields, whose range exceeds int64.
func (d *decoder) unsigned(o object, names ...string) (uint64, bool) {
	v, name, ok := o.get(names...)
	if !ok {
		return 0, false
	}
	lit, err := numberLiteral(v.raw)
	if err == nil {
		var n uint64
		if n, err = strconv.ParseUint(lit, 10, 64); err == nil {
			return n, true
		}
		var i int64
		if i, err = parseInteger(v.raw, 0, math.MaxInt64); err == nil {
			return uint64(i), true
		}
	}
	d.failf(o.child(name), "%v", err)
	return 0, false
}

func parseInteger(raw []byte, lo, hi int64) (int64, error) {
	if v, ok := smallInteger(raw); ok {
		if v < lo || v > hi {
			return 0, fmt.Errorf("%d is out of range [%d, %d]", v, lo, hi)
		}
		return v, nil
	}
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

// smallInteger reads the common case without allocating: a JSON number of
// up to 18 digits with no fraction or exponent, optionally negative. Every
// other form takes the general path.
func smallInteger(raw []byte) (int64, bool) {
	digits := raw
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 18 {
		return 0, false
	}
	var v int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	if raw[0] == '-' {
		v = -v
	}
	return v, true
}

// numberLiteral returns the text of a JSON number, or of a string holding
// one.
func numberLiteral(raw []byte) (string, error) {
	switch {
	case raw[0] == '"':
		s := string(unquote(raw))
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
	v, name, ok := o.get(names...)
	if !ok {
		return "", false
	}
	if v.raw[0] == '"' {
		s := d.intern(unquote(v.raw))
		if s == "" || !(s[0] >= '0' && s[0] <= '9' || s[0] == '-' || s[0] == '+') {
			return s, true // a name, the common case: no number to try
		}
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return s, true
		}
		if name, ok := table[n]; ok {
			return name, true
		}
		return strconv.FormatInt(n, 10), true
	}
	n, err := parseInteger(v.raw, math.MinInt32, math.MaxInt32)
	if err != nil {
		d.failf(o.child(name), "%v", err)
		return "", false
	}
	if s, ok := table[n]; ok {
		return s, true
	}
	return strconv.FormatInt(n, 10), true
}

func isNull(raw []byte) bool {
	return bytes.Equal(raw, []byte("null"))
}

func kindOf(raw []byte) string {
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
