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
	"bytes"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"flowscope.io/flowscope/flowfilter"
)

func staticKeys(keys ...string) ContinueKeys {
	ks := make([][]byte, len(keys))
	for i, k := range keys {
		ks[i] = bytes.Repeat([]byte(k), MinContinueKeyBytes)
	}
	return func() [][]byte { return ks }
}

func mustEncode(t testing.TB, tok continueToken, keys ContinueKeys) string {
	t.Helper()
	s, err := tok.encode(keys)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContinueTokenRoundTrip(t *testing.T) {
	since := time.Unix(1764072000, 0).UTC()
	tok := continueToken{Version: continueVersion, RV: 42, Since: &since,
		After: flowfilter.Cursor{Time: time.Unix(1764072001, 5000).UTC(), Node: "node-a", RV: 41}}
	keys := staticKeys("a")
	got, err := decodeContinue(mustEncode(t, tok, keys), keys)
	if err != nil {
		t.Fatal(err)
	}
	if got.RV != 42 || !got.Since.Equal(since) || got.After != tok.After {
		t.Errorf("round trip = %+v, want %+v", got, tok)
	}
}

// TestContinueTokenRotation: a token signed with the old key stays valid
// while the old key is still listed after the new one, and not after.
func TestContinueTokenRotation(t *testing.T) {
	tok := continueToken{Version: continueVersion, RV: 7, After: flowfilter.Cursor{Node: "n", RV: 3}}
	old := mustEncode(t, tok, staticKeys("old"))
	if _, err := decodeContinue(old, staticKeys("new", "old")); err != nil {
		t.Errorf("token of the old key refused during the overlap: %v", err)
	}
	if _, err := decodeContinue(mustEncode(t, tok, staticKeys("new", "old")), staticKeys("new")); err != nil {
		t.Errorf("token of the new key refused after the overlap: %v", err)
	}
	if _, err := decodeContinue(old, staticKeys("new")); err == nil || !strings.Contains(err.Error(), "signature does not match") {
		t.Errorf("token of a retired key: %v, want a signature error", err)
	}
}

// TestDecodeContinueRejectsForgeries: what alice did before tokens were
// signed (a token of her own, with a snapshot of her choosing), and every
// edit of a signed token, is refused with a 400 that says why.
func TestDecodeContinueRejectsForgeries(t *testing.T) {
	keys := staticKeys("k")
	enc := base64.RawURLEncoding
	ahead := uint64(time.Now().Add(time.Hour).UnixMicro())
	good := mustEncode(t, continueToken{Version: continueVersion, RV: 9, After: flowfilter.Cursor{Node: "a", RV: 1}}, keys)
	payload, sig, _ := strings.Cut(good, ".")
	forged := enc.EncodeToString([]byte(`{"v":2,"rv":` + strconv.FormatUint(ahead, 10) + `,"after":{"time":"2026-01-01T00:00:00Z","node":"a","rv":1}}`))
	for name, s := range map[string]string{
		"empty":                   "",
		"not base64":              "!!!.!!!",
		"unsigned v1 token":       enc.EncodeToString([]byte(`{"v":1,"rv":` + strconv.FormatUint(ahead, 10) + `,"after":{"time":"2026-01-01T00:00:00Z","node":"a","rv":1}}`)),
		"forged payload, old sig": forged + "." + sig,
		"forged payload, no sig":  forged + ".",
		"signature cut short":     payload + "." + sig[:10],
		"other key":               mustEncode(t, continueToken{Version: continueVersion, RV: 9, After: flowfilter.Cursor{Node: "a", RV: 1}}, staticKeys("x")),
		"signed, wrong version":   mustEncode(t, continueToken{Version: 1, RV: 1, After: flowfilter.Cursor{Node: "a", RV: 1}}, keys),
		"signed, no version":      mustEncode(t, continueToken{Version: continueVersion, After: flowfilter.Cursor{Node: "a", RV: 1}}, keys),
		"signed, no position":     mustEncode(t, continueToken{Version: continueVersion, RV: 1}, keys),
	} {
		if _, err := decodeContinue(s, keys); err == nil || !strings.Contains(err.Error(), "invalid continue token") {
			t.Errorf("%s: decodeContinue(%q) = %v, want an invalid continue token error", name, s, err)
		}
	}
}

func TestEncodeContinueRefusesWhatCannotTravel(t *testing.T) {
	far := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("", 25*3600))
	if _, err := (continueToken{Version: continueVersion, RV: 1, Since: &far, After: flowfilter.Cursor{Node: "a", RV: 1}}).encode(staticKeys("k")); err == nil {
		t.Error("a time JSON cannot carry encoded without an error")
	}
}

func FuzzDecodeContinue(f *testing.F) {
	keys := staticKeys("k")
	f.Add(mustEncode(f, continueToken{Version: continueVersion, RV: 7, After: flowfilter.Cursor{Node: "n", RV: 3}}, keys))
	f.Add("e30")
	f.Add("e30.")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := decodeContinue(s, keys)
		if err != nil {
			return
		}
		if tok.RV == 0 || tok.After.Node == "" || tok.After.RV == 0 {
			t.Fatalf("accepted an incomplete token %+v", tok)
		}
		// Only what this server signed is accepted.
		payload, sig, _ := strings.Cut(s, ".")
		raw, _ := base64.RawURLEncoding.DecodeString(payload)
		mac, _ := base64.RawURLEncoding.DecodeString(sig)
		if !bytes.Equal(mac, tokenMAC(keys()[0], raw)) {
			t.Fatalf("accepted %q without this server's signature", s)
		}
	})
}
