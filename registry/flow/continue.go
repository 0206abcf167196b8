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

package flow

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"flowscope.io/flowscope/flowfilter"
)

// continueToken is the opaque position of a paginated list. It holds
// everything the next page needs, so it survives restarts of the server and
// the agents: the snapshot, the time window fixed at the first page, and the
// last flow returned in list order.
//
// A token is signed: its snapshot becomes a reservation on every agent's
// clock, and a forged snapshot ahead of the clock would hide every newer
// flow from every list until the clock caught up.
type continueToken struct {
	Version int               `json:"v"`
	RV      uint64            `json:"rv"`
	Since   *time.Time        `json:"since,omitempty"`
	Until   *time.Time        `json:"until,omitempty"`
	After   flowfilter.Cursor `json:"after"`
}

// continueVersion 1 was the unsigned token.
const continueVersion = 2

// ContinueKeys returns the keys that sign continue tokens: the first signs,
// each verifies. A key is rotated in by putting a new one first, and
// retired once no list that could hold a token it signed is still paging.
type ContinueKeys func() [][]byte

// MinContinueKeyBytes is the shortest key ContinueKeys may return.
const MinContinueKeyBytes = 32

// RandomContinueKeys returns one random key, for a server whose tokens need
// survive neither its restart nor another replica.
func RandomContinueKeys() ContinueKeys {
	key := make([]byte, MinContinueKeyBytes)
	_, _ = rand.Read(key) // never fails (crypto/rand)
	keys := [][]byte{key}
	return func() [][]byte { return keys }
}

func tokenMAC(key, payload []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(payload)
	return h.Sum(nil)
}

// encode returns base64url(JSON) "." base64url(HMAC-SHA256 of the JSON).
func (t continueToken) encode(keys ContinueKeys) (string, error) {
	b, err := json.Marshal(t)
	if err != nil {
		return "", fmt.Errorf("encode continue token: %w", err)
	}
	ks := keys()
	if len(ks) == 0 {
		return "", fmt.Errorf("encode continue token: no signing key")
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(b) + "." + enc.EncodeToString(tokenMAC(ks[0], b)), nil
}

func decodeContinue(s string, keys ContinueKeys) (*continueToken, error) {
	bad := func(why string) error {
		return apierrors.NewBadRequest(fmt.Sprintf("invalid continue token: %s; restart the list without continue", why))
	}
	payload, sig, ok := strings.Cut(s, ".")
	if !ok {
		return nil, bad("not a signed Flowscope continue token")
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return nil, bad("not base64url")
	}
	mac, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return nil, bad("not base64url")
	}
	valid := false
	for _, k := range keys() {
		// Every key is tried, so the time taken does not say which one
		// matched or how much of the signature did.
		valid = hmac.Equal(mac, tokenMAC(k, raw)) || valid
	}
	if !valid {
		return nil, bad("its signature does not match (forged, or signed with a key this server no longer has)")
	}
	t := new(continueToken)
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(t); err != nil {
		return nil, bad("not a Flowscope continue token")
	}
	switch {
	case t.Version != continueVersion:
		return nil, bad(fmt.Sprintf("unsupported version %d", t.Version))
	case t.RV == 0:
		return nil, bad("no resource version")
	case t.After.Node == "" || t.After.RV == 0:
		return nil, bad("no position")
	}
	return t, nil
}
