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

package ingest

import (
	"testing"
	"time"
)

// TestClockNextAt: versions from one reading of the wall clock, as a batch
// takes them, keep increasing, stay above a reservation made before, and
// follow the wall clock again at the next reading; the ceiling is
// persisted ahead of them.
func TestClockNextAt(t *testing.T) {
	wall := time.UnixMicro(1000)
	var persisted []uint64
	c := clock{now: func() time.Time { return wall }, persist: func(v uint64) error {
		persisted = append(persisted, v)
		return nil
	}}
	lead := uint64(ceilingLead.Microseconds())
	step := func(want uint64, got uint64, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("version %d, want %d", got, want)
		}
		if c.ceiling <= got {
			t.Fatalf("ceiling %d not above version %d", c.ceiling, got)
		}
	}
	w := c.wall()
	for i := range uint64(3) {
		v, err := c.nextAt(w)
		step(1000+i, v, err)
	}
	v, err := c.reserve(2000)
	step(2000, v, err)
	// A batch whose reading came before the reservation.
	v, err = c.nextAt(w)
	step(2001, v, err)
	wall = time.UnixMicro(1000 + int64(lead) + 5000)
	w = c.wall()
	v, err = c.nextAt(w)
	step(w, v, err)
	v, err = c.nextAt(w)
	step(w+1, v, err)
	if len(persisted) != 2 || persisted[0] != 1000+lead || persisted[1] != w+lead {
		t.Errorf("persisted ceilings %v, want [%d %d]", persisted, 1000+lead, w+lead)
	}
}
