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

package store

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// storeKey is a key of the store taken apart (the layout is in store.go).
// Keys come from disk, so Check parses every one of them rather than trust
// its length.
type storeKey struct {
	prefix byte
	// field and value: a posting list's index and value.
	field indexField
	value string
	// minTime and firstRV: the catalog position of a catalog entry's or
	// posting list's block; firstRV alone for a frame.
	minTime int64
	firstRV uint64
	frame   int
	// meta is a metadata key's name.
	meta string
}

var errMalformedKey = errors.New("malformed store key")

// parseKey takes a key apart. It accepts exactly the keys append writes.
func parseKey(k []byte) (storeKey, error) {
	if len(k) == 0 {
		return storeKey{}, fmt.Errorf("%w: empty", errMalformedKey)
	}
	key := storeKey{prefix: k[0]}
	rest := k[1:]
	switch k[0] {
	case prefixMeta:
		key.meta = string(rest)
		return key, nil
	case prefixFrame:
		if len(rest) != 10 {
			return storeKey{}, fmt.Errorf("%w: frame key of %d bytes", errMalformedKey, len(k))
		}
		key.firstRV, key.frame = binary.BigEndian.Uint64(rest), int(binary.BigEndian.Uint16(rest[8:]))
		return key, nil
	case prefixPosting:
		if len(rest) < 2 || rest[0] == 0 || int(rest[0]) > numIndexes {
			return storeKey{}, fmt.Errorf("%w: posting key without a known index", errMalformedKey)
		}
		key.field = indexField(rest[0])
		n, l := binary.Uvarint(rest[1:])
		if l <= 0 || l != uvarintLen(n) || n > uint64(len(rest)) {
			return storeKey{}, fmt.Errorf("%w: posting key's value length", errMalformedKey)
		}
		rest = rest[1+l:]
		if uint64(len(rest)) != n+positionLen {
			return storeKey{}, fmt.Errorf("%w: posting key of %d bytes", errMalformedKey, len(k))
		}
		key.value, rest = string(rest[:n]), rest[n:]
	case prefixCatalog:
		if len(rest) != positionLen {
			return storeKey{}, fmt.Errorf("%w: catalog key of %d bytes", errMalformedKey, len(k))
		}
	default:
		return storeKey{}, fmt.Errorf("%w: prefix %q", errMalformedKey, k[0])
	}
	key.minTime, key.firstRV = int64(binary.BigEndian.Uint64(rest)), binary.BigEndian.Uint64(rest[8:])
	if key.minTime < 0 {
		return storeKey{}, fmt.Errorf("%w: block time %d", errMalformedKey, key.minTime)
	}
	return key, nil
}

// append appends the key.
func (k storeKey) append(dst []byte) []byte {
	switch k.prefix {
	case prefixMeta:
		return append(append(dst, prefixMeta), k.meta...)
	case prefixFrame:
		return append(dst, frameKey(k.firstRV, k.frame)...)
	case prefixPosting:
		return appendPostingKey(dst, k.field, k.value, k.minTime, k.firstRV)
	default:
		return appendPosition(append(dst, k.prefix), k.minTime, k.firstRV)
	}
}
