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

// Package minheap is the module's one heap: a binary min-heap over a
// slice, ordered by a less function, for the merges in list and version
// order of the aggregated server and the agents' store. It is
// container/heap's algorithm without its interface: elements are neither
// boxed (a Push through container/heap allocates for any element larger
// than a pointer) nor swapped through a method.
package minheap

// Heap is a min-heap of T. Make one with New; the zero value has no order.
type Heap[T any] struct {
	items []T
	less  func(a, b T) bool
}

// New returns a heap of items, which it takes over, ordered by less.
func New[T any](less func(a, b T) bool, items []T) Heap[T] {
	h := Heap[T]{items: items, less: less}
	for i := len(items)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
	return h
}

// Len returns the number of elements.
func (h *Heap[T]) Len() int { return len(h.items) }

// Min returns the least element without removing it. The heap must not
// be empty.
func (h *Heap[T]) Min() T { return h.items[0] }

// Push adds x.
func (h *Heap[T]) Push(x T) {
	h.items = append(h.items, x)
	h.up(len(h.items) - 1)
}

// Pop removes and returns the least element. The heap must not be empty.
func (h *Heap[T]) Pop() T {
	n := len(h.items) - 1
	x := h.items[0]
	h.items[0] = h.items[n]
	var zero T
	h.items[n] = zero // the heap keeps no reference to it
	h.items = h.items[:n]
	h.down(0)
	return x
}

// ReplaceMin replaces the least element with x: Pop then Push, in one
// pass down.
func (h *Heap[T]) ReplaceMin(x T) {
	h.items[0] = x
	h.down(0)
}

// FixMin restores the order after the least element changed in place (an
// element that is a pointer, say, whose target moved on).
func (h *Heap[T]) FixMin() { h.down(0) }

func (h *Heap[T]) up(j int) {
	for j > 0 {
		i := (j - 1) / 2 // parent
		if !h.less(h.items[j], h.items[i]) {
			break
		}
		h.items[i], h.items[j] = h.items[j], h.items[i]
		j = i
	}
}

func (h *Heap[T]) down(i int) {
	n := len(h.items)
	for {
		j := 2*i + 1
		if j >= n || j < 0 { // j < 0 after int overflow
			break
		}
		if r := j + 1; r < n && h.less(h.items[r], h.items[j]) {
			j = r // the lesser child
		}
		if !h.less(h.items[j], h.items[i]) {
			break
		}
		h.items[i], h.items[j] = h.items[j], h.items[i]
		i = j
	}
}
