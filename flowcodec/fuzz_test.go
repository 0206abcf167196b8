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

package flowcodec_test

import (
	"math/rand"
	"testing"

	"sigs.k8s.io/randfill"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowcodec"
)

// FuzzUnmarshal: any input either fails with ErrMalformed or decodes to a
// flow whose encoding decodes to the same flow (and is stable). It never
// panics.
func FuzzUnmarshal(f *testing.F) {
	for _, fl := range realisticFlows(f, 40, 9) {
		b, _ := flowcodec.Marshal(fl)
		f.Add(b)
	}
	r := rand.New(rand.NewSource(9))
	for range 40 {
		b, _ := flowcodec.Marshal(randomFlow(r))
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkReencode(t, b)
	})
}

// FuzzRoundTrip: a flow made from the fuzzer's bytes round-trips as it
// does through JSON.
func FuzzRoundTrip(f *testing.F) {
	for i := range 20 {
		f.Add([]byte{byte(i), byte(i * 7), byte(i * 13), 1, 2, 3, 4, 5, 6, 7, 8, 9})
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fl := new(v1alpha1.Flow)
		filler(randfill.NewFromGoFuzz(data)).Fill(fl)
		checkRoundTrip(t, fl)
	})
}
