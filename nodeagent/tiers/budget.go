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

package tiers

import (
	"time"
)

// budget accounts, per namespace, the bytes admitted to the tier that are
// still held: each class's admissions are counted in minute slots that
// expire with the class's retention. Encoded bytes are converted to disk
// bytes with the ratio last measured over the whole tier.
type budget struct {
	// slots[namespace][class retention] is that namespace's admissions to
	// that class, oldest first.
	slots map[string]map[time.Duration][]slot
	used  map[string]int64
	total int64
	// diskPerByte is disk bytes per encoded byte, measured by Maintain.
	diskPerByte float64
}

type slot struct {
	minute int64
	bytes  int64
}

func newBudget() budget {
	return budget{slots: map[string]map[time.Duration][]slot{}, used: map[string]int64{}, diskPerByte: 1}
}

// shareLimit is the encoded bytes a namespace may hold: an equal share of
// max among the namespaces holding flows, plus one for a newcomer. 0
// means no limit.
func (b *budget) shareLimit(maxBytes int64) int64 {
	if maxBytes <= 0 {
		return 0
	}
	return max(int64(float64(maxBytes)/b.diskPerByte)/int64(len(b.used)+1), 1)
}

// admit counts n encoded bytes of namespace ns for class r at now, unless
// that takes ns over limit.
func (b *budget) admit(ns string, r time.Duration, n, limit int64, now time.Time) bool {
	if limit > 0 && b.used[ns]+n > limit {
		return false
	}
	byClass := b.slots[ns]
	if byClass == nil {
		byClass = map[time.Duration][]slot{}
		b.slots[ns] = byClass
	}
	m := now.Unix() / 60
	s := byClass[r]
	if len(s) > 0 && s[len(s)-1].minute == m {
		s[len(s)-1].bytes += n
	} else {
		byClass[r] = append(s, slot{minute: m, bytes: n})
	}
	b.used[ns] += n
	b.total += n
	return true
}

// expire forgets the admissions whose flows have left their class: a
// slot goes once its whole minute is older than the retention.
func (b *budget) expire(now time.Time) {
	for ns, byClass := range b.slots {
		for r, s := range byClass {
			cut := now.Add(-r).Unix()/60 - 1
			i := 0
			for i < len(s) && s[i].minute < cut {
				b.used[ns] -= s[i].bytes
				b.total -= s[i].bytes
				i++
			}
			if i == len(s) {
				delete(byClass, r)
			} else {
				byClass[r] = s[i:]
			}
		}
		if len(byClass) == 0 {
			delete(b.slots, ns)
			delete(b.used, ns)
		}
	}
}

// observeDisk updates the disk-to-encoded ratio from the tier's disk use,
// once there is enough data for Badger's fixed overhead (its manifest,
// preallocated logs) not to dominate; the ratio is clamped, since a wild
// one would refuse everything or admit far too much.
func (b *budget) observeDisk(disk int64) {
	const enough = 8 << 20
	if b.total >= enough && disk > 0 {
		b.diskPerByte = min(max(float64(disk)/float64(b.total), 0.05), 2)
	}
}
