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

func (e *encoder) tcpFlags(flags []string) {
	if len(flags) == 0 {
		e.b = append(e.b, 0)
		return
	}
	for _, order := range []struct {
		kind uint64
		bits []uint8
	}{{flagsSorted, tcpFlagsSorted}, {flagsInBits, tcpFlagsInBits}} {
		var mask uint64
		j := 0
		for _, name := range flags {
			for j < len(order.bits) && tcpFlagsByBit[order.bits[j]] != name {
				j++
			}
			if j == len(order.bits) {
				break
			}
			mask |= 1 << order.bits[j]
			j++
		}
		if j <= len(order.bits) && countBits(mask) == len(flags) {
			e.uvarint(mask<<2 | order.kind)
			return
		}
	}
	e.uvarint(uint64(len(flags))<<2 | flagsList)
	for _, s := range flags {
		e.enum(s, tcpFlagsByBit)
	}
}

func countBits(m uint64) int {
	n := 0
	for ; m != 0; m &= m - 1 {
		n++
	}
	return n
}

func (d *decoder) tcpFlags() []string {
	v := d.uvarint()
	if v == 0 {
		return nil
	}
	var order []uint8
	switch v & 3 {
	case flagsSorted:
		order = tcpFlagsSorted
	case flagsInBits:
		order = tcpFlagsInBits
	case flagsList:
		n := v >> 2
		if n > uint64(len(d.b)-d.i) {
			d.fail("length exceeds input")
			return nil
		}
		l := make([]string, n)
		for i := range l {
			l[i] = d.enum(tcpFlagsByBit)
		}
		return l
	default:
		d.fail("bad tcp flags")
		return nil
	}
	mask := v >> 2
	if mask >= 1<<len(tcpFlagsByBit) {
		d.fail("bad tcp flags")
		return nil
	}
	l := make([]string, 0, countBits(mask))
	for _, bit := range order {
		if mask&(1<<bit) != 0 {
			l = append(l, tcpFlagsByBit[bit])
		}
	}
	return l
}
