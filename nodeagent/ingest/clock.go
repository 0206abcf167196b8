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
	"encoding/binary"
	"fmt"
	"time"
)

// ceilingLead is how far ahead of the versions it hands out the clock
// persists a ceiling. After a restart the clock starts at the ceiling, so
// versions keep increasing even if the node's clock went back or a
// reservation from a faster clock raised them; one durable write per lead.
// A restarted agent's versions run up to the lead ahead of the wall clock
// for a while, and a list, whose snapshot is the aggregated server's clock,
// leaves its newest flows out until the clock catches up (a watch from the
// list's version gets them): the lead is short for that window to be.
const ceilingLead = time.Second

// clock is a hybrid logical clock in microseconds since the Unix epoch:
// each version is the wall clock, or one more than the last version if that
// is larger. It is used from the pipeline goroutine only.
type clock struct {
	now     func() time.Time
	last    uint64
	ceiling uint64
	persist func(ceiling uint64) error
}

func (c *clock) wall() uint64 { return uint64(c.now().UnixMicro()) }

// next returns a new version, larger than every one before.
func (c *clock) next() (uint64, error) { return c.nextAt(c.wall()) }

// nextAt is next with the wall clock read before, as wall(): the pipeline
// reads it once for a batch, whose flows then get the versions from there
// on. Reading it costs more than the rest of a version (a vDSO call,
// more in a VM), and at hundreds of thousands of flows a second a
// batch takes milliseconds, which the next batch's reading makes up.
func (c *clock) nextAt(wall uint64) (uint64, error) {
	return c.advance(max(wall, c.last+1))
}

// reserve returns a version at least atLeast and the wall clock, not
// smaller than any handed out, and guarantees later versions are larger.
func (c *clock) reserve(atLeast uint64) (uint64, error) {
	return c.advance(max(c.wall(), c.last, atLeast))
}

func (c *clock) advance(v uint64) (uint64, error) {
	if v >= c.ceiling {
		ceiling := v + uint64(ceilingLead.Microseconds())
		if err := c.persist(ceiling); err != nil {
			return 0, fmt.Errorf("persist clock ceiling: %w", err)
		}
		c.ceiling = ceiling
	}
	c.last = v
	return v, nil
}

func encodeUint64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func decodeUint64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("want 8 bytes, have %d", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}
