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
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
)

type encoder struct {
	b    []byte
	err  error
	nstr int
	strs [maxRefs]string
}

// The times a flow can carry are those RFC 3339, and so JSON, can print:
// years 0 to 9999. A flow outside them would encode here and then fail
// every JSON response it is part of, so both directions refuse it.
const (
	MinUnix int64 = -62167219200 // 0000-01-01T00:00:00Z
	MaxUnix int64 = 253402300799 // 9999-12-31T23:59:59Z
)

// checkTime records an error for a time, in Unix seconds, outside
// [MinUnix, MaxUnix].
func (e *encoder) checkTime(sec int64) {
	if (sec < MinUnix || sec > MaxUnix) && e.err == nil {
		e.err = fmt.Errorf("encode flow: time %d s after 1970 is outside years 0-9999", sec)
	}
}

func (e *encoder) uvarint(v uint64) {
	if v < 0x80 {
		e.b = append(e.b, byte(v))
		return
	}
	e.b = binary.AppendUvarint(e.b, v)
}

func (e *encoder) varint(v int64) { e.uvarint(zigzag(v)) }

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

func (e *encoder) string(s string) {
	if s == "" {
		e.b = append(e.b, 0)
		return
	}
	for i, t := range e.strs[:e.nstr] {
		if t == s {
			e.uvarint(uint64(i)<<1 | 1)
			return
		}
	}
	e.uvarint(uint64(len(s)) << 1)
	e.b = append(e.b, s...)
	if e.nstr < maxRefs {
		e.strs[e.nstr] = s
		e.nstr++
	}
}

func (e *encoder) enum(s string, table []string) {
	if s == "" {
		e.b = append(e.b, 0)
		return
	}
	if i := slices.Index(table, s); i >= 0 {
		e.uvarint(uint64(i) + 2)
		return
	}
	e.b = append(e.b, 1)
	e.string(s)
}

func (e *encoder) strMap(m map[string]string) {
	e.uvarint(uint64(len(m)))
	if len(m) == 0 {
		return
	}
	var buf [16]string
	keys := buf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		e.string(k)
		e.string(m[k])
	}
}

func (e *encoder) strList(l []string) {
	e.uvarint(uint64(len(l)))
	for _, s := range l {
		e.string(s)
	}
}

func (e *encoder) enums(l []string, table []string) {
	e.uvarint(uint64(len(l)))
	for _, s := range l {
		e.enum(s, table)
	}
}

// addr writes an address; src and dst are the flow's IP addresses an
// endpoint may refer to, when refs.
func (e *encoder) addr(s string, refs bool, src, dst string) {
	switch {
	case s == "":
		e.b = append(e.b, addrEmpty)
		return
	case refs && s == src:
		e.b = append(e.b, addrSameSource)
		return
	case refs && s == dst:
		e.b = append(e.b, addrSameDestination)
		return
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		var buf [64]byte
		if string(a.AppendTo(buf[:0])) == s {
			if a.Is4() {
				b := a.As4()
				e.b = append(append(e.b, addr4), b[:]...)
			} else {
				b := a.As16()
				e.b = append(append(e.b, addr6), b[:]...)
			}
			return
		}
	}
	e.b = append(e.b, addrString)
	e.string(s)
}
