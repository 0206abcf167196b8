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
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// Blocks.
//
// Write cuts its records, in version order, into blocks: runs of
// consecutive versions of at most MaxBlockFlows flows whose times lie
// within maxBlockSpan. A block's flows are grouped by their endpoints
// (namespace, source pod, destination pod, destination port, then time) and
// split into frames of frameFlows flows, each compressed on its own: the
// flows a selective query names sit side by side in a frame or two, which
// is all it decompresses, and similar flows side by side compress better.
// A position is a flow's index in this order.
//
//	k<minTime:8><firstRV:8>          catalog entry: blockInfo
//	b<firstRV:8><frame:2>            zstd(frame)
//
// A frame is columnar (colframe.go): its flows' versions, times and other
// per-flow values in columns, and each distinct shape of flow once.
//
// Keys per flow are what limits Badger's ingest rate, and compression
// needs many similar flows side by side: a block of 4096 flows costs 16
// frame keys, one catalog key and a posting list per distinct indexed value,
// instead of a dozen keys per flow.
const (
	frameFlows = 256
	// MaxBlockFlows is the most flows one block holds: writes of more are
	// cut, and writes of fewer make smaller blocks, which cost more keys
	// per flow and compress less.
	MaxBlockFlows = 16 * frameFlows
	// maxBlockSpan bounds the time between a block's first and last flow,
	// so a scan from time T need only start at blocks from T-maxBlockSpan.
	maxBlockSpan = int64(10e9) // ns
)

// blockInfo is a catalog entry's value.
type blockInfo struct {
	maxTime int64 // ns
	lastRV  uint64
	count   int
}

func (b blockInfo) append(dst []byte, minTime int64, firstRV uint64) []byte {
	dst = binary.AppendUvarint(dst, uint64(b.maxTime-minTime))
	dst = binary.AppendUvarint(dst, b.lastRV-firstRV)
	return binary.AppendUvarint(dst, uint64(b.count))
}

func decodeBlockInfo(v []byte, minTime int64, firstRV uint64) (blockInfo, error) {
	var u [3]uint64
	for i := range u {
		x, n := binary.Uvarint(v)
		if n <= 0 {
			return blockInfo{}, errors.New("malformed block catalog entry")
		}
		u[i], v = x, v[n:]
	}
	if u[0] > uint64(maxBlockSpan) || firstRV+u[1] < firstRV || u[2] == 0 || u[2] > MaxBlockFlows {
		return blockInfo{}, fmt.Errorf("malformed block catalog entry: span %d ns, versions +%d, %d flows", u[0], u[1], u[2])
	}
	return blockInfo{maxTime: minTime + int64(u[0]), lastRV: firstRV + u[1], count: int(u[2])}, nil
}

// entry is one flow of a decoded frame.
type entry struct {
	time int64 // ns
	rv   uint64
	fr   *frame // the decoded frame that holds it, as row i
	i    int
}

// block is a block being written.
type block struct {
	minTime int64
	firstRV uint64
	info    blockInfo
	recs    []Record // in list order
	times   []int64
}

// cutBlocks splits recs, in version order, into blocks. The blocks share
// one copy of recs, each sorted in place.
func cutBlocks(recs []Record) []*block {
	all := slices.Clone(recs)
	times := make([]int64, len(recs))
	var blocks []*block
	var cur *block
	var lo, hi int64
	start := 0
	for i, r := range recs {
		t := flowTime(r.Flow)
		times[i] = t
		if cur == nil || i-start == MaxBlockFlows || max(hi, t)-min(lo, t) > maxBlockSpan {
			if cur != nil {
				cur.recs, cur.times = all[start:i:i], times[start:i:i]
			}
			cur = &block{firstRV: r.RV}
			blocks = append(blocks, cur)
			lo, hi, start = t, t, i
		}
		lo, hi = min(lo, t), max(hi, t)
		cur.minTime, cur.info.maxTime, cur.info.lastRV = lo, hi, r.RV
	}
	if cur != nil {
		cur.recs, cur.times = all[start:], times[start:]
	}
	s := sorters.Get().(*sorter)
	defer sorters.Put(s)
	for _, b := range blocks {
		b.info.count = len(b.recs)
		s.sort(b)
	}
	return blocks
}

// sorter puts a block's flows in storage order: grouped by endpoints, then
// in list order. Sorters are pooled with their buffers.
//
// The endpoints (namespace, source pod, destination pod) of a block are a
// few hundred at most: they are ranked once, so that the sort compares
// integers rather than three strings per comparison.
type sorter struct {
	ranks    map[endpoints]uint32
	distinct []endpoints
	order    []uint32
	rankOf   []uint32
	keys     []sortKey
}

type endpoints struct{ ns, src, dst string }

type sortKey struct {
	rank uint32
	port int32
	time int64
	rv   uint64
	i    int
}

var sorters = sync.Pool{New: func() any { return &sorter{ranks: map[endpoints]uint32{}} }}

func (s *sorter) sort(b *block) {
	s.distinct = s.distinct[:0]
	keys := slices.Grow(s.keys[:0], len(b.recs))[:len(b.recs)]
	var prev endpoints
	var prevRank uint32
	for i, r := range b.recs {
		f := r.Flow
		e := endpoints{ns: f.Namespace}
		if f.Source != nil {
			e.src = f.Source.PodName
		}
		if f.Destination != nil {
			e.dst = f.Destination.PodName
		}
		rank := prevRank
		if i == 0 || e != prev {
			var ok bool
			if rank, ok = s.ranks[e]; !ok {
				rank = uint32(len(s.distinct))
				s.ranks[e] = rank
				s.distinct = append(s.distinct, e)
			}
			prev, prevRank = e, rank
		}
		keys[i] = sortKey{rank: rank, time: b.times[i], rv: r.RV, i: i}
		if f.L4 != nil {
			keys[i].port = f.L4.DestinationPort
		}
	}
	// Ranks in the endpoints' order.
	order := s.order[:0]
	for i := range s.distinct {
		order = append(order, uint32(i))
	}
	slices.SortFunc(order, func(i, j uint32) int {
		a, b := &s.distinct[i], &s.distinct[j]
		return cmp.Or(cmp.Compare(a.ns, b.ns), cmp.Compare(a.src, b.src), cmp.Compare(a.dst, b.dst))
	})
	rankOf := slices.Grow(s.rankOf[:0], len(order))[:len(order)]
	for r, i := range order {
		rankOf[i] = uint32(r)
	}
	for i := range keys {
		keys[i].rank = rankOf[keys[i].rank]
	}
	slices.SortFunc(keys, func(a, b sortKey) int {
		return cmp.Or(cmp.Compare(a.rank, b.rank), cmp.Compare(a.port, b.port), cmp.Compare(a.time, b.time), cmp.Compare(a.rv, b.rv))
	})
	// Permute in place, cycle by cycle: position to takes from keys[to].i.
	for start := range keys {
		if keys[start].i == start {
			continue
		}
		r, t := b.recs[start], b.times[start]
		to := start
		for {
			from := keys[to].i
			keys[to].i = to
			if from == start {
				b.recs[to], b.times[to] = r, t
				break
			}
			b.recs[to], b.times[to] = b.recs[from], b.times[from]
			to = from
		}
	}
	s.keys, s.order, s.rankOf = keys, order, rankOf
	// No strings kept in the pool.
	clear(s.distinct)
	clear(s.ranks)
}

// frames returns the number of frames of a block of n flows.
func frames(n int) int { return (n + frameFlows - 1) / frameFlows }

// maxFrameBytes bounds a frame's uncompressed size: the decoder refuses
// larger ones (so that a corrupt frame cannot claim gigabytes).
const maxFrameBytes = 64 << 20

// MaxFlowBytes is the most bytes one flow may take encoded, so that a frame
// of frameFlows flows, with three varints each, always decodes. Sources
// keep flows well below it (the replay source's line bound, the labels
// bound of enrichment); Write refuses a batch with a flow over it rather
// than write a block that cannot be read back.
const MaxFlowBytes = maxFrameBytes/frameFlows - 64

var (
	zstdEncoder, _ = zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithZeroFrames(true))
	zstdDecoder, _ = zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithDecoderMaxMemory(maxFrameBytes))
)

// frameJob is one frame to encode.
type frameJob struct {
	b     *block
	frame int
	out   []byte
	// shape is each flow's shape index in the frame (colframe.go): flows
	// of one shape share their index values but the destination port's.
	shape []uint32
}

// frameBufs holds what one write's encoded frames take: their compressed
// bytes, in chunks per encoding worker, and their flows' shape indexes.
// Write takes them from framePool and returns them once Badger has copied
// the frames (the batch's Flush), so that a write allocates little.
type frameBufs struct {
	chunks [][][]byte // per worker
	shapes []uint32
}

var framePool = sync.Pool{New: func() any { return new(frameBufs) }}

// encodeFrames encodes every frame of blocks, on all CPUs, into buffers of
// its own.
func encodeFrames(blocks []*block) ([]frameJob, error) {
	return encodeFramesInto(blocks, new(frameBufs))
}

// encodeFramesInto encodes every frame of blocks, on all CPUs, into bufs,
// which the jobs then point into.
func encodeFramesInto(blocks []*block, bufs *frameBufs) ([]frameJob, error) {
	total := 0
	for _, b := range blocks {
		total += len(b.recs)
	}
	bufs.shapes = slices.Grow(bufs.shapes[:0], total)[:total]
	var jobs []frameJob
	off := 0
	for _, b := range blocks {
		for fr := range frames(len(b.recs)) {
			lo, hi := off+fr*frameFlows, off+min((fr+1)*frameFlows, len(b.recs))
			jobs = append(jobs, frameJob{b: b, frame: fr, shape: bufs.shapes[lo:hi:hi]})
		}
		off += len(b.recs)
	}
	workers := min(runtime.GOMAXPROCS(0), len(jobs))
	for len(bufs.chunks) < workers {
		bufs.chunks = append(bufs.chunks, nil)
	}
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := frameEncoders.Get().(*frameEncoder)
			defer frameEncoders.Put(e)
			chunks, next := bufs.chunks[w], 0
			defer func() { bufs.chunks[w] = chunks }()
			var out []byte
			for i := w; i < len(jobs); i += workers {
				j := &jobs[i]
				lo := j.frame * frameFlows
				shape, err := e.encode(j.b, lo, min(lo+frameFlows, len(j.b.recs)))
				if err != nil {
					errs[w] = err
					return
				}
				copy(j.shape, shape)
				if cap(out)-len(out) < len(e.raw)/2+64 {
					if next == len(chunks) {
						chunks = append(chunks, make([]byte, 0, max(64<<10, len(e.raw))))
					}
					out = chunks[next][:0]
					next++
				}
				start := len(out)
				out = zstdEncoder.EncodeAll(e.raw, out)
				j.out = out[start:len(out):len(out)]
				// A chunk that EncodeAll outgrew is replaced by the
				// larger one, for the next write.
				chunks[next-1] = out[:0]
			}
		}()
	}
	wg.Wait()
	return jobs, errors.Join(errs...)
}

// decodeFrame decompresses a frame into buf and returns its entries. The
// entries' frame points into buf.
func decodeFrame(z []byte, buf []byte, firstRV uint64, entries []entry) ([]byte, []entry, error) {
	raw, err := zstdDecoder.DecodeAll(z, buf[:0])
	if err != nil {
		return buf, entries, fmt.Errorf("decompress frame: %w", err)
	}
	fr, err := decodeColumns(raw, firstRV)
	if err != nil {
		return raw, entries[:0], err
	}
	entries = entries[:0]
	for i := range fr.rows() {
		entries = append(entries, entry{rv: fr.rv[i], time: fr.time[i] * 1e3, fr: fr, i: i})
	}
	return raw, entries, nil
}

func frameKey(firstRV uint64, frame int) []byte {
	k := make([]byte, 11)
	k[0] = prefixFrame
	binary.BigEndian.PutUint64(k[1:], firstRV)
	binary.BigEndian.PutUint16(k[9:], uint16(frame))
	return k
}

func catalogKey(minTime int64, firstRV uint64) []byte {
	return appendPosition(append(make([]byte, 0, 1+positionLen), prefixCatalog), minTime, firstRV)
}

// flowTime is a flow's time in list order: the codec, like the API, keeps
// microseconds.
func flowTime(f *v1alpha1.Flow) int64 {
	return unixNano(f.Time.Truncate(time.Microsecond))
}
