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
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// The scanner replaces encoding/json's reflection (a map of json.RawMessage
// per object, each nested object scanned again when it was read), which
// was most of an agent's CPU when it imported a Hubble file: one pass over
// a line checks its syntax and indexes every object and array, without
// allocating per value. It accepts exactly what encoding/json accepts
// (RFC 8259, at most maxDepth nested objects and arrays), which
// FuzzExportLineDifferential checks against the former decoder.

// maxDepth is encoding/json's limit on nested objects and arrays.
const maxDepth = 10000

// value is one JSON value of a line: its exact text, without surrounding
// white space, and for an object or array where its members are among the
// line's.
type value struct {
	raw      []byte
	first, n int
}

// member is a member of an object (with its name, escapes resolved) or an
// item of an array (with an empty key). It holds offsets rather than
// slices: without pointers, a line's index costs the garbage collector
// nothing (no write barriers as it is built, no clearing when it is let go).
type member struct {
	// The name is data[keyStart:keyEnd], or keys[keyStart:keyEnd] when it
	// held escapes.
	keyStart, keyEnd int32
	// The value is data[start:end].
	start, end int32
	first, n   int32
	escapedKey bool
}

// scanner indexes one line. The members of an object or array are
// gathered on stack while it is scanned and moved to members, in one
// block, when it ends; its value then points at the block.
type scanner struct {
	data    []byte
	pos     int
	depth   int
	stack   []member
	members []member
	// keys holds the names that held escapes, resolved.
	keys []byte
	// paths are the decoder's, kept for the next line, and objects the
	// list it read last.
	paths   []pathNode
	objects []object
	strs    []string
	// strings and addrs outlive the line: they intern the text of the
	// fields that repeat from flow to flow (names, labels, addresses).
	strings map[string]string
	addrs   map[string]string
	// decoder reads the line the scanner indexed; it is pooled with it.
	decoder decoder
}

// document scans data, which must be one JSON value and nothing else but
// white space.
func (s *scanner) document() (value, bool) {
	v, ok := s.value()
	if !ok {
		return v, false
	}
	s.skipSpace()
	return v, s.pos == len(s.data)
}

func (s *scanner) skipSpace() {
	i := s.pos
	for i < len(s.data) && s.data[i] <= ' ' && (s.data[i] == ' ' || s.data[i] == '\t' || s.data[i] == '\n' || s.data[i] == '\r') {
		i++
	}
	s.pos = i
}

func (s *scanner) value() (value, bool) {
	s.skipSpace()
	if s.pos >= len(s.data) {
		return value{}, false
	}
	start := s.pos
	var ok bool
	switch c := s.data[s.pos]; {
	case c == '{':
		return s.container('}')
	case c == '[':
		return s.container(']')
	case c == '"':
		_, _, ok = s.string()
	case c == 't':
		ok = s.literal("true")
	case c == 'f':
		ok = s.literal("false")
	case c == 'n':
		ok = s.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		ok = s.number()
	}
	return value{raw: s.data[start:s.pos]}, ok
}

// container scans an object (end '}') or an array (end ']').
func (s *scanner) container(end byte) (value, bool) {
	start := s.pos
	s.pos++
	if s.depth++; s.depth > maxDepth {
		return value{}, false
	}
	base := len(s.stack)
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == end {
		s.pos++
	} else {
		for {
			var m member
			if end == '}' {
				s.skipSpace()
				if s.pos >= len(s.data) || s.data[s.pos] != '"' {
					return value{}, false
				}
				keyStart := s.pos + 1
				key, escaped, ok := s.string()
				if !ok {
					return value{}, false
				}
				if escaped {
					m.escapedKey = true
					keyStart = len(s.keys)
					s.keys = append(s.keys, key...)
				}
				m.keyStart, m.keyEnd = int32(keyStart), int32(keyStart+len(key))
				s.skipSpace()
				if s.pos >= len(s.data) || s.data[s.pos] != ':' {
					return value{}, false
				}
				s.pos++
			}
			v, ok := s.value()
			if !ok {
				return value{}, false
			}
			m.start, m.end = int32(s.pos-len(v.raw)), int32(s.pos)
			m.first, m.n = int32(v.first), int32(v.n)
			s.stack = append(s.stack, m)
			s.skipSpace()
			if s.pos >= len(s.data) {
				return value{}, false
			}
			c := s.data[s.pos]
			s.pos++
			if c == end {
				break
			}
			if c != ',' {
				return value{}, false
			}
		}
	}
	s.depth--
	v := value{raw: s.data[start:s.pos], first: len(s.members), n: len(s.stack) - base}
	s.members = append(s.members, s.stack[base:]...)
	s.stack = s.stack[:base]
	return v, true
}

func (s *scanner) literal(lit string) bool {
	if len(s.data)-s.pos < len(lit) || string(s.data[s.pos:s.pos+len(lit)]) != lit {
		return false
	}
	s.pos += len(lit)
	return true
}

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
func (s *scanner) number() bool {
	if s.data[s.pos] == '-' {
		s.pos++
	}
	switch {
	case s.pos >= len(s.data):
		return false
	case s.data[s.pos] == '0':
		s.pos++
	case s.data[s.pos] >= '1' && s.data[s.pos] <= '9':
		s.digits()
	default:
		return false
	}
	if s.pos < len(s.data) && s.data[s.pos] == '.' {
		s.pos++
		if s.digits() == 0 {
			return false
		}
	}
	if s.pos < len(s.data) && (s.data[s.pos] == 'e' || s.data[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.data) && (s.data[s.pos] == '+' || s.data[s.pos] == '-') {
			s.pos++
		}
		if s.digits() == 0 {
			return false
		}
	}
	return true
}

func (s *scanner) digits() int {
	start := s.pos
	for s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
		s.pos++
	}
	return s.pos - start
}

// string scans a string and returns its text, escapes resolved: a window on
// the line when it has none (escaped false), the common case.
func (s *scanner) string() (text []byte, escaped, ok bool) {
	data := s.data
	start := s.pos
	i := start + 1
	for {
		// Most bytes need no attention; skip them in a tight loop.
		for i < len(data) && plain[data[i]] {
			i++
		}
		if i >= len(data) {
			s.pos = i
			return nil, false, false
		}
		switch data[i] {
		case '"':
			i++
			s.pos = i
			raw := data[start:i]
			if escaped {
				return unquote(raw), true, true
			}
			return raw[1 : len(raw)-1], false, true
		case '\\':
			escaped = true
			i++
			if i >= len(data) {
				s.pos = i
				return nil, false, false
			}
			switch data[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if len(data)-i < 5 || !isHex4(data[i+1:i+5]) {
					s.pos = i
					return nil, false, false
				}
				i += 5
			default:
				s.pos = i
				return nil, false, false
			}
		default: // a control character
			s.pos = i
			return nil, false, false
		}
	}
}

// plain tells the bytes a string holds as they are: not its end, not an
// escape, not a control character (which JSON forbids).
var plain = func() (t [256]bool) {
	for c := range t {
		t[c] = c >= ' ' && c != '"' && c != '\\'
	}
	return t
}()

func isHex4(b []byte) bool {
	for _, c := range b[:4] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// unquote returns the text of raw, a JSON string the scanner accepted, as
// encoding/json decodes it: an escaped lone surrogate, and any invalid
// UTF-8, become U+FFFD.
func unquote(raw []byte) []byte {
	s := raw[1 : len(raw)-1]
	i := bytes.IndexByte(s, '\\')
	if i < 0 {
		// ExportLine took only valid UTF-8: nothing to coerce.
		return s
	}
	b := make([]byte, 0, len(s)+2*utf8.UTFMax)
	b = append(b, s[:i]...)
	for i < len(s) {
		c := s[i]
		switch {
		case c == '\\':
			i++
			switch s[i] {
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r := hex4(s[i+1:])
				i += 5
				if utf16.IsSurrogate(r) {
					r2 := rune(-1)
					if len(s)-i >= 6 && s[i] == '\\' && s[i+1] == 'u' {
						r2 = hex4(s[i+2:])
					}
					if dec := utf16.DecodeRune(r, r2); dec != unicode.ReplacementChar {
						i += 6
						b = utf8.AppendRune(b, dec)
						continue
					}
					r = unicode.ReplacementChar
				}
				b = utf8.AppendRune(b, r)
				continue
			default: // '"', '\\', '/'
				b = append(b, s[i])
			}
			i++
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRune(s[i:])
			b = utf8.AppendRune(b, r)
			i += size
		}
	}
	return b
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		default:
			c = c - 'A' + 10
		}
		r = r<<4 | rune(c)
	}
	return r
}
