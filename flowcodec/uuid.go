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

// hexValue maps a lowercase hex digit to its value, anything else to 0xff.
var hexValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = byte(c - 'a' + 10)
	}
	return t
}()

// AppendUUID appends the 16 bytes of s, and reports true, when s is a
// UUID in lowercase hex with dashes, which AppendFormatUUID gives back
// exactly; it returns b as it was otherwise. One pass: the store packs
// every flow's UID with it.
func AppendUUID(b []byte, s string) ([]byte, bool) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return b, false
	}
	n := len(b)
	var bad byte
	for i := 0; i < 36; i += 2 {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i++
		}
		hi, lo := hexValue[s[i]], hexValue[s[i+1]]
		bad |= hi | lo
		b = append(b, hi<<4|lo)
	}
	if bad&0xf0 != 0 {
		return b[:n], false
	}
	return b, true
}

const hexDigits = "0123456789abcdef"

// AppendFormatUUID appends the 16 bytes u as a UUID in lowercase hex with
// dashes.
func AppendFormatUUID(b []byte, u []byte) []byte {
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hexDigits[c>>4], hexDigits[c&15])
	}
	return b
}
