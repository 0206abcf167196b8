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

package stream_test

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"flowscope.io/flowscope/nodeagent/l7"
	"flowscope.io/flowscope/nodeagent/l7/stream"
)

// TestSegmentDataValidOnlyDuringAdd: a Segment's Data is the datapath
// reader's buffer, valid only during Add, and the tracker hands it on to
// the parsers without a copy when it comes in order. Every parser must
// therefore copy what it keeps. Each protocol's conversation, with
// segments held for reordering too, gives the same records whether each
// segment has bytes of its own or all share one buffer overwritten after
// every Add.
func TestSegmentDataValidOnlyDuringAdd(t *testing.T) {
	for _, tc := range []struct {
		name string
		conv func(testing.TB, int) conversation
	}{
		{"http1", http1Conversation},
		{"dns", dnsConversation},
		{"http2", http2Conversation},
		{"kafka", kafkaConversation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conv := tc.conv(t, 40)
			own := feedConversation(conv, false)
			shared := feedConversation(conv, true)
			if len(own) != 2*len(conv.exchanges) {
				t.Fatalf("%d records of %d exchanges (twice: in order, then reordered)", len(own), len(conv.exchanges))
			}
			if !reflect.DeepEqual(own, shared) {
				for i := range min(len(own), len(shared)) {
					if !reflect.DeepEqual(own[i], shared[i]) {
						t.Fatalf("record %d with the buffer overwritten after Add:\n%+v\nwith bytes of its own:\n%+v", i, shared[i].Exchange, own[i].Exchange)
					}
				}
				t.Fatalf("%d records with the buffer overwritten after Add, %d with bytes of their own", len(shared), len(own))
			}
		})
	}
}

// feedConversation runs conv through a tracker on one connection: its
// exchanges in order, then again on a second connection with each
// request's segment split in two and the halves swapped, so the tracker
// holds the second half until the first comes. With shared, every
// segment's Data is one buffer, overwritten after each Add.
func feedConversation(conv conversation, shared bool) []stream.Record {
	tcp, udp := protocols()
	tr := stream.New(stream.Options{Protocols: tcp, DatagramProtocols: udp})
	now := time.Unix(1_800_000_000, 0)
	buf := make([]byte, 64<<10)
	var seq [2]uint32
	var out []stream.Record
	port := client.Port()
	add := func(d l7.Dir, flags uint8, at uint32, p []byte) {
		src, dst := netip.AddrPortFrom(client.Addr(), port), server
		if d == l7.FromServer {
			src, dst = dst, src
		}
		now = now.Add(50 * time.Microsecond)
		data := append([]byte(nil), p[:min(budget, len(p))]...)
		if shared {
			data = buf[:copy(buf, p[:min(budget, len(p))])]
		}
		out = append(out, tr.Add(stream.Segment{Time: now, Ifindex: 7, Ingress: d == l7.FromClient, Src: src, Dst: dst,
			TCP: !conv.udp, Seq: at, Flags: flags, Len: len(p), Data: data})...)
		for i := range buf {
			buf[i] = 0xAA
		}
	}
	seg := func(d l7.Dir, flags uint8, p []byte) {
		add(d, flags, seq[d], p)
		seq[d] += uint32(len(p))
		if flags&stream.FlagSYN != 0 {
			seq[d]++
		}
	}
	for round := range 2 {
		port++
		if !conv.udp {
			seq = [2]uint32{1000, 5000}
			seg(l7.FromClient, stream.FlagSYN, nil)
			seg(l7.FromServer, stream.FlagSYN|stream.FlagACK, nil)
		}
		for d, p := range conv.open {
			if len(p) > 0 {
				seg(l7.Dir(d), stream.FlagACK, p)
			}
		}
		for _, x := range conv.exchanges {
			if round == 1 && !conv.udp && len(x[0]) > 1 {
				half := len(x[0]) / 2
				add(l7.FromClient, stream.FlagACK, seq[l7.FromClient]+uint32(half), x[0][half:])
				add(l7.FromClient, stream.FlagACK, seq[l7.FromClient], x[0][:half])
				seq[l7.FromClient] += uint32(len(x[0]))
			} else {
				seg(l7.FromClient, stream.FlagACK, x[0])
			}
			seg(l7.FromServer, stream.FlagACK, x[1])
		}
	}
	return out
}
