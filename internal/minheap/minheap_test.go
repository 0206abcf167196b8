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

package minheap

import (
	"container/heap"
	"math/rand/v2"
	"slices"
	"testing"
)

// item has a key that ties often and an id that tells tied items apart.
type item struct{ key, id int }

func lessItem(a, b item) bool { return a.key < b.key }

// refHeap is container/heap's heap of items, the reference.
type refHeap []item

func (h refHeap) Len() int           { return len(h) }
func (h refHeap) Less(i, j int) bool { return h[i].key < h[j].key }
func (h refHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *refHeap) Push(x any)        { *h = append(*h, x.(item)) }
func (h *refHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// TestSameAsContainerHeap runs random operations on a Heap and on
// container/heap: every element comes out at the same step, ties
// included, so code that moved from container/heap behaves as before.
func TestSameAsContainerHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for round := range 50 {
		id := 0
		next := func() item { id++; return item{key: rng.IntN(8), id: id} }
		var initial []item
		for range rng.IntN(20) {
			initial = append(initial, next())
		}
		ref := refHeap(slices.Clone(initial))
		heap.Init(&ref)
		h := New(lessItem, initial)
		for step := range 200 {
			switch op := rng.IntN(4); {
			case op == 0 || h.Len() == 0:
				x := next()
				h.Push(x)
				heap.Push(&ref, x)
			case op == 1:
				if got, want := h.Pop(), heap.Pop(&ref).(item); got != want {
					t.Fatalf("round %d step %d: Pop %v, container/heap %v", round, step, got, want)
				}
			case op == 2:
				x := next()
				h.ReplaceMin(x)
				ref[0] = x
				heap.Fix(&ref, 0)
			default:
				if got, want := h.Min(), ref[0]; got != want {
					t.Fatalf("round %d step %d: Min %v, container/heap %v", round, step, got, want)
				}
			}
			if h.Len() != ref.Len() {
				t.Fatalf("round %d step %d: Len %d, container/heap %d", round, step, h.Len(), ref.Len())
			}
		}
	}
}

func TestPopsInOrder(t *testing.T) {
	for _, tc := range []struct {
		name    string
		initial []int
		pushed  []int
	}{
		{"empty", nil, nil},
		{"from New", []int{5, 3, 9, 1, 1, 7}, nil},
		{"pushed", nil, []int{5, 3, 9, 1, 1, 7}},
		{"both", []int{4, 8, 2}, []int{6, 0, 2, 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := New(func(a, b int) bool { return a < b }, slices.Clone(tc.initial))
			for _, x := range tc.pushed {
				h.Push(x)
			}
			var got []int
			for h.Len() > 0 {
				least := h.Min()
				if x := h.Pop(); x != least {
					t.Fatalf("Pop %d after Min %d", x, least)
				}
				got = append(got, least)
			}
			want := slices.Sorted(slices.Values(append(slices.Clone(tc.initial), tc.pushed...)))
			if !slices.Equal(got, want) {
				t.Errorf("popped %v, want %v", got, want)
			}
		})
	}
}

// TestFixMin: the least element of pointers moves on in place, as the
// store's block cursors do, and the heap follows.
func TestFixMin(t *testing.T) {
	type cursor struct{ at []int }
	h := New(func(a, b *cursor) bool { return a.at[0] < b.at[0] },
		[]*cursor{{at: []int{1, 4, 9}}, {at: []int{2, 3}}, {at: []int{5, 6, 7, 8}}})
	var got []int
	for h.Len() > 0 {
		c := h.Min()
		got = append(got, c.at[0])
		if c.at = c.at[1:]; len(c.at) == 0 {
			h.Pop()
		} else {
			h.FixMin()
		}
	}
	if want := []int{1, 2, 3, 4, 5, 6, 7, 8, 9}; !slices.Equal(got, want) {
		t.Errorf("merged %v, want %v", got, want)
	}
}

// TestPopForgets: a popped element is not kept alive by the heap's
// backing array.
func TestPopForgets(t *testing.T) {
	a, b := new(int), new(int)
	*a, *b = 1, 2
	h := New(func(x, y *int) bool { return *x < *y }, []*int{b, a})
	h.Pop()
	if rest := h.items[:cap(h.items)]; rest[1] != nil {
		t.Errorf("the popped element stays in the backing array")
	}
}
