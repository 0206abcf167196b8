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

package capture

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/cilium/ebpf/ringbuf"
)

// L7Event is one payload sample: the first bytes of a TCP segment or UDP
// datagram that passed an interface with an L7 gate entry, or a TCP
// SYN, FIN or RST without payload. Src and Dst are the packet's, not the
// connection's: both directions of a connection are sampled.
type L7Event struct {
	// Time is when the packet passed the hook.
	Time    time.Time
	Ifindex uint32
	// Ingress is true at the interface's ingress hook; on a pod's
	// host-side veth those are the pod's outgoing packets.
	Ingress  bool
	Src, Dst netip.AddrPort
	// Proto is the IP protocol: 6 (TCP) or 17 (UDP).
	Proto uint8
	// Seq and Ack are the TCP sequence and acknowledgment numbers. On a
	// SYN, Seq is the initial sequence number and payload (TCP Fast
	// Open) starts at Seq+1; otherwise the payload starts at Seq. Zero
	// for UDP.
	Seq, Ack uint32
	// Flags are the TCP flags (zero for UDP).
	Flags uint8
	// PayloadLen is the packet's L4 payload length in full: all segments
	// of a GSO packet; for UDP the datagram's length from its header,
	// which may continue in IP fragments that are not sampled.
	PayloadLen int
	// Protocols are the gate entry's, for user space to pick parsers.
	Protocols L7Protocols
	// Data is the first min(PayloadLen, budget) payload bytes. It aliases
	// the reader's buffer: it is valid only until the callback returns.
	Data []byte
}

// l7HeaderSize is the size of struct l7_event in bpf/flow.h, without its
// data.
const l7HeaderSize = 72

// Errors of decodeL7Record. Like decodeRecord's, a record failing them is
// a bug or corruption: counted, never delivered.
var (
	errL7Size   = errors.New("record size")
	errL7Cap    = errors.New("captured length")
	errL7Proto  = errors.New("protocol")
	errL7Hook   = errors.New("hook")
	errL7UDPTCP = errors.New("tcp fields on a udp record")
	errL7Protos = errors.New("unknown l7 protocols")
)

// l7Class is the data size of the record that holds n captured bytes:
// the kernel reserves constant sizes (0, then powers of two from 64).
func l7Class(n int) int {
	if n == 0 {
		return 0
	}
	c := 64
	for c < n {
		c *= 2
	}
	return c
}

// decodeL7Record parses one l7_events record into ev; ev.Data aliases b.
func decodeL7Record(b []byte, toWall clock, ev *L7Event) error {
	if len(b) < l7HeaderSize {
		return fmt.Errorf("decode l7 record: %w: %d bytes", errL7Size, len(b))
	}
	le := binary.LittleEndian
	payloadLen := le.Uint32(b[20:])
	capLen := int(le.Uint16(b[60:]))
	proto, family, hook, flags, protos := b[62], b[63], b[64], b[65], L7Protocols(b[66])
	if capLen > L7MaxBudget || uint32(capLen) > payloadLen {
		return fmt.Errorf("decode l7 record: %w %d of %d", errL7Cap, capLen, payloadLen)
	}
	if want := l7HeaderSize + l7Class(capLen); len(b) != want {
		return fmt.Errorf("decode l7 record: %w: %d bytes for %d captured, want %d", errL7Size, len(b), capLen, want)
	}
	src, ok1 := addrOf(family, b[24:40])
	dst, ok2 := addrOf(family, b[40:56])
	if !ok1 || !ok2 {
		return fmt.Errorf("decode l7 record: %w %d", errRecordFamily, family)
	}
	seq, ack := le.Uint32(b[12:]), le.Uint32(b[16:])
	switch proto {
	case 6:
	case 17:
		if seq != 0 || ack != 0 || flags != 0 {
			return fmt.Errorf("decode l7 record: %w", errL7UDPTCP)
		}
	default:
		return fmt.Errorf("decode l7 record: %w %d", errL7Proto, proto)
	}
	if hook > 1 {
		return fmt.Errorf("decode l7 record: %w %d", errL7Hook, hook)
	}
	if protos == 0 || protos&^l7AllProtocols != 0 {
		return fmt.Errorf("decode l7 record: %w %#x", errL7Protos, uint8(protos))
	}
	*ev = L7Event{
		Ifindex:    le.Uint32(b[8:]),
		Ingress:    hook == 0,
		Src:        netip.AddrPortFrom(src, le.Uint16(b[56:])),
		Dst:        netip.AddrPortFrom(dst, le.Uint16(b[58:])),
		Proto:      proto,
		Seq:        seq,
		Ack:        ack,
		Flags:      flags,
		PayloadLen: int(payloadLen),
		Protocols:  protos,
		Data:       b[l7HeaderSize : l7HeaderSize+capLen : l7HeaderSize+capLen],
	}
	if toWall != nil {
		ev.Time = toWall(le.Uint64(b[0:]))
	}
	return nil
}

// RunL7 delivers the payload samples to fn until ctx is done or the
// Datapath is closed, from their own ring buffer: it runs beside Run, not
// instead. fn is called from one goroutine; ev.Data is valid only until
// fn returns (copy what you keep). Samples arrive in batches, at least
// every Options.L7FlushInterval. A slow fn fills the ring buffer, and the
// kernel counts the samples it then drops (Stats.L7DropRingbuf). RunL7
// can run once per Datapath: stopping closes the ring buffer.
func (d *Datapath) RunL7(ctx context.Context, fn func(ev L7Event)) error {
	stop := context.AfterFunc(ctx, func() { _ = d.l7Reader.Close() })
	defer stop()
	var rec ringbuf.Record
	var ev L7Event
	toWall := wallClock()
	d.l7Reader.SetDeadline(time.Now().Add(d.opts.L7FlushInterval))
	for n := 1; ; n++ {
		if err := d.l7Reader.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) {
				return nil
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// The kernel did not wake us (see L7FlushInterval):
				// everything there was has been read.
				d.l7Reader.SetDeadline(time.Now().Add(d.opts.L7FlushInterval))
				continue
			}
			return fmt.Errorf("read l7 ring buffer: %w", err)
		}
		if n%4096 == 0 {
			toWall = wallClock() // follow wall clock steps
		}
		if err := decodeL7Record(rec.RawSample, toWall, &ev); err != nil {
			d.l7Decode.Add(1)
			continue
		}
		d.l7Delivered.Add(1)
		fn(ev)
	}
}
