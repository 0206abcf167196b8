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

package flowcodec

import (
	"fmt"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// Unmarshal decodes b into f, replacing all of f. It rejects any input
// Marshal cannot have written, with an error matching ErrMalformed; f is
// then undefined. f keeps no reference to b.
func Unmarshal(b []byte, f *v1alpha1.Flow) error {
	*f = v1alpha1.Flow{}
	if len(b) == 0 {
		return fmt.Errorf("%w: empty", ErrMalformed)
	}
	if b[0] != Version {
		return fmt.Errorf("%w: format version %d, want %d", ErrMalformed, b[0], Version)
	}
	d := decoders.Get().(*decoder)
	// Cleared when put back, so that a pooled decoder holds no flow's
	// memory.
	defer func() { *d = decoder{}; decoders.Put(d) }()
	d.b, d.s, d.i = b, string(b), 1
	d.scratch = d.scratchBuf[:0]
	d.flow(f)
	if d.err == nil && d.i != len(d.b) {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return d.err
	}
	if len(d.fixups) > 0 {
		s := string(d.scratch)
		for _, x := range d.fixups {
			*x.p = s[x.start:x.end]
		}
	}
	return nil
}

// block holds the parts of a flow a decoder allocates together.
type block struct {
	ip    v1alpha1.IP
	l4    v1alpha1.Layer4
	icmp  v1alpha1.ICMP
	src   v1alpha1.Endpoint
	dst   v1alpha1.Endpoint
	tr    v1alpha1.Traffic
	end   metav1.MicroTime
	reply bool
	l7    v1alpha1.Layer7
}

func (d *decoder) flow(f *v1alpha1.Flow) {
	flags := d.uvarint()
	if flags&^fAll != 0 || flags&(fCreation|fCreationDerived) == fCreation|fCreationDerived ||
		flags&(fLabelsSource|fLabelsDestination) == fLabelsSource|fLabelsDestination ||
		flags&(fIsReply|fIsReplyTrue) == fIsReplyTrue || flags&(fL4|fICMP) == fICMP ||
		flags&(fTime|fCreationDerived) == fCreationDerived || flags&(fL7|fHTTPResponseHeaders) == fHTTPResponseHeaders ||
		flags&(fL7|fDNSRetriedOverTCP) == fDNSRetriedOverTCP || flags&(fL7|fGRPCDetails) == fGRPCDetails {
		d.fail("bad flags")
		return
	}
	var blk *block
	if flags&(fEndTime|fIsReply|fIP|fL4|fSource|fDestination|fL7|fTraffic) != 0 {
		blk = new(block)
	}

	var rv uint64
	var rvRef strRef
	if flags&fRVNumeric != 0 {
		rv = d.uvarint()
	} else {
		rvRef.s = d.string()
	}
	var us, sec int64
	if flags&fTime != 0 {
		var base int64
		if flags&fRVNumeric != 0 {
			base = int64(rv)
		}
		us = d.varint() + base
		sec = floorDiv(us, 1e6)
		d.checkTime(sec)
		f.Time = metav1.NewMicroTime(time.UnixMicro(us))
	}
	if flags&fEndTime != 0 {
		end := us + d.varint()
		d.checkTime(floorDiv(end, 1e6))
		blk.end = metav1.NewMicroTime(time.UnixMicro(end))
		f.EndTime = &blk.end
	}
	switch {
	case flags&fCreation != 0:
		created := sec + d.varint()
		d.checkTime(created)
		f.CreationTimestamp = metav1.NewTime(time.Unix(created, 0))
	case flags&fCreationDerived != 0:
		f.CreationTimestamp = metav1.NewTime(time.Unix(sec, 0))
	}
	f.NodeName = d.string()
	switch {
	case flags&fNameDerived != 0:
		start := len(d.scratch)
		d.scratch = append(append(d.scratch, f.NodeName...), '.')
		if flags&fRVNumeric != 0 {
			rvStart := len(d.scratch)
			d.scratch = strconv.AppendUint(d.scratch, rv, 10)
			rvRef = strRef{start: rvStart, end: len(d.scratch), scratch: true}
		} else {
			d.scratch = append(d.scratch, rvRef.s...)
		}
		d.set(&f.Name, strRef{start: start, end: len(d.scratch), scratch: true})
	default:
		f.Name = d.string()
		if flags&fRVNumeric != 0 {
			start := len(d.scratch)
			d.scratch = strconv.AppendUint(d.scratch, rv, 10)
			rvRef = strRef{start: start, end: len(d.scratch), scratch: true}
		}
	}
	d.set(&f.ResourceVersion, rvRef)
	f.Namespace = d.string()
	if flags&fUIDBinary != 0 {
		u := d.bytes(16)
		if d.err == nil {
			start := len(d.scratch)
			d.scratch = AppendFormatUUID(d.scratch, u)
			d.set((*string)(&f.UID), strRef{start: start, end: len(d.scratch), scratch: true})
		}
	} else {
		f.UID = types.UID(d.string())
	}
	f.Verdict = v1alpha1.Verdict(d.enum(verdicts))
	f.DropReason = d.enum(dropReasons)
	f.TrafficDirection = v1alpha1.TrafficDirection(d.enum(directions))
	if flags&fIsReply != 0 {
		blk.reply = flags&fIsReplyTrue != 0
		f.IsReply = &blk.reply
	}
	f.Interface = d.string()
	var src, dst strRef
	if flags&fIP != 0 {
		f.IP = &blk.ip
		f.IP.IPVersion = v1alpha1.IPVersion(d.enum(ipVersions))
		src = d.addr(false, strRef{}, strRef{})
		dst = d.addr(false, strRef{}, strRef{})
		d.set(&f.IP.Source, src)
		d.set(&f.IP.Destination, dst)
	}
	var sport, dport int32
	if flags&fL4 != 0 {
		l4 := &blk.l4
		f.L4 = l4
		l4.Protocol = v1alpha1.Protocol(d.enum(protocols))
		l4.SourcePort = d.int32()
		l4.DestinationPort = d.int32()
		l4.TCPFlags = d.tcpFlags()
		if flags&fICMP != 0 {
			l4.ICMP = &blk.icmp
			l4.ICMP.Type = d.int32()
			l4.ICMP.Code = d.int32()
		}
		sport, dport = l4.SourcePort, l4.DestinationPort
	}
	if flags&fSource != 0 {
		f.Source = &blk.src
		d.endpoint(f.Source, sport, flags&fIP != 0, src, dst)
	}
	if flags&fDestination != 0 {
		f.Destination = &blk.dst
		d.endpoint(f.Destination, dport, flags&fIP != 0, src, dst)
	}
	if flags&fL7 != 0 {
		f.L7 = &blk.l7
		d.layer7(f.L7, flags&fHTTPResponseHeaders != 0, flags&fGRPCDetails != 0)
		if flags&fDNSRetriedOverTCP != 0 {
			if f.L7.DNS == nil {
				d.fail("retried over TCP without dns")
			} else {
				f.L7.DNS.RetriedOverTCP = true
			}
		}
	}
	if flags&fTraffic != 0 {
		f.Traffic = &blk.tr
		f.Traffic.Packets = d.varint()
		f.Traffic.Bytes = d.varint()
		f.Traffic.PacketsReply = d.varint()
		f.Traffic.BytesReply = d.varint()
	}
	switch {
	case flags&fLabelsSource != 0:
		if f.Source == nil || len(f.Source.Labels) == 0 {
			d.fail("labels refer to no source labels")
			return
		}
		f.Labels = cloneMap(f.Source.Labels)
	case flags&fLabelsDestination != 0:
		if f.Destination == nil || len(f.Destination.Labels) == 0 {
			d.fail("labels refer to no destination labels")
			return
		}
		f.Labels = cloneMap(f.Destination.Labels)
	default:
		f.Labels = d.strMap()
	}
	if flags&fRare != 0 {
		d.rare(&f.ObjectMeta)
	}
	if flags&fTypeMeta != 0 {
		f.APIVersion = d.string()
		f.Kind = d.string()
	}
}

func cloneMap(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
