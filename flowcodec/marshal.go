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
	"errors"
	"reflect"
	"strconv"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// Marshal encodes f.
func Marshal(f *v1alpha1.Flow) ([]byte, error) {
	return AppendMarshal(make([]byte, 0, 256), f)
}

// AppendMarshal appends the encoding of f to dst.
func AppendMarshal(dst []byte, f *v1alpha1.Flow) ([]byte, error) {
	if f == nil {
		return dst, errors.New("encode flow: nil flow")
	}
	e := encoder{b: dst}
	e.flow(f)
	if e.err != nil {
		return dst, e.err
	}
	return e.b, nil
}

func (e *encoder) flow(f *v1alpha1.Flow) {
	var flags uint64
	// The store's frames keep the version apart, leaving it empty: no
	// ParseUint, whose error for "" allocates.
	var rv uint64
	rvNumeric := false
	if len(f.ResourceVersion) > 0 && f.ResourceVersion[0] != '+' {
		var rvErr error
		rv, rvErr = strconv.ParseUint(f.ResourceVersion, 10, 64)
		rvNumeric = rvErr == nil && (f.ResourceVersion == "0" || f.ResourceVersion[0] != '0')
	}
	if rvNumeric {
		flags |= fRVNumeric
	}
	var timeBase int64
	if rvNumeric {
		timeBase = int64(rv)
	}
	var us, sec int64
	if !f.Time.IsZero() {
		flags |= fTime
		us = f.Time.UnixMicro()
		sec = floorDiv(us, 1e6)
		e.checkTime(sec)
	}
	if f.EndTime != nil && !f.EndTime.IsZero() {
		flags |= fEndTime
		e.checkTime(f.EndTime.Unix())
	}
	if !f.CreationTimestamp.IsZero() {
		e.checkTime(f.CreationTimestamp.Unix())
		if flags&fTime != 0 && f.CreationTimestamp.Unix() == sec {
			flags |= fCreationDerived
		} else {
			flags |= fCreation
		}
	}
	if f.IsReply != nil {
		flags |= fIsReply
		if *f.IsReply {
			flags |= fIsReplyTrue
		}
	}
	if f.IP != nil {
		flags |= fIP
	}
	if f.L4 != nil {
		flags |= fL4
		if f.L4.ICMP != nil {
			flags |= fICMP
		}
	}
	if f.Source != nil {
		flags |= fSource
	}
	if f.Destination != nil {
		flags |= fDestination
	}
	if f.L7 != nil {
		flags |= fL7
		if f.L7.HTTP != nil && len(f.L7.HTTP.ResponseHeaders) > 0 {
			flags |= fHTTPResponseHeaders
		}
		if f.L7.DNS != nil && f.L7.DNS.RetriedOverTCP {
			flags |= fDNSRetriedOverTCP
		}
		if g := f.L7.GRPC; g != nil && (g.Message != "" || len(g.ResponseHeaders) > 0) {
			flags |= fGRPCDetails
		}
	}
	if f.Traffic != nil {
		flags |= fTraffic
	}
	if len(f.Name) == len(f.NodeName)+1+len(f.ResourceVersion) && f.Name[len(f.NodeName)] == '.' &&
		f.Name[:len(f.NodeName)] == f.NodeName && f.Name[len(f.NodeName)+1:] == f.ResourceVersion {
		flags |= fNameDerived
	}
	// A UID in UUID form travels as its 16 bytes, packed once here.
	var uid [16]byte
	if _, ok := AppendUUID(uid[:0], string(f.UID)); ok {
		flags |= fUIDBinary
	}
	if len(f.Labels) > 0 {
		switch {
		case f.Source != nil && mapsEqual(f.Labels, f.Source.Labels):
			flags |= fLabelsSource
		case f.Destination != nil && mapsEqual(f.Labels, f.Destination.Labels):
			flags |= fLabelsDestination
		}
	}
	if rareFlags(&f.ObjectMeta) != 0 {
		flags |= fRare
	}
	if f.APIVersion != "" || f.Kind != "" {
		flags |= fTypeMeta
	}

	e.b = append(e.b, Version)
	e.uvarint(flags)
	if rvNumeric {
		e.uvarint(rv)
	} else {
		e.string(f.ResourceVersion)
	}
	if flags&fTime != 0 {
		e.varint(us - timeBase)
	}
	if flags&fEndTime != 0 {
		e.varint(f.EndTime.UnixMicro() - us)
	}
	if flags&fCreation != 0 {
		e.varint(f.CreationTimestamp.Unix() - sec)
	}
	e.string(f.NodeName)
	if flags&fNameDerived == 0 {
		e.string(f.Name)
	}
	e.string(f.Namespace)
	if flags&fUIDBinary != 0 {
		e.b = append(e.b, uid[:]...)
	} else {
		e.string(string(f.UID))
	}
	e.enum(string(f.Verdict), verdicts)
	e.enum(f.DropReason, dropReasons)
	e.enum(string(f.TrafficDirection), directions)
	e.string(f.Interface)
	var ipSrc, ipDst string
	if f.IP != nil {
		e.enum(string(f.IP.IPVersion), ipVersions)
		e.addr(f.IP.Source, false, "", "")
		e.addr(f.IP.Destination, false, "", "")
		ipSrc, ipDst = f.IP.Source, f.IP.Destination
	}
	var sport, dport int32
	if l4 := f.L4; l4 != nil {
		e.enum(string(l4.Protocol), protocols)
		e.varint(int64(l4.SourcePort))
		e.varint(int64(l4.DestinationPort))
		e.tcpFlags(l4.TCPFlags)
		if l4.ICMP != nil {
			e.varint(int64(l4.ICMP.Type))
			e.varint(int64(l4.ICMP.Code))
		}
		sport, dport = l4.SourcePort, l4.DestinationPort
	}
	if f.Source != nil {
		e.endpoint(f.Source, sport, f.IP != nil, ipSrc, ipDst)
	}
	if f.Destination != nil {
		e.endpoint(f.Destination, dport, f.IP != nil, ipSrc, ipDst)
	}
	if f.L7 != nil {
		e.layer7(f.L7)
	}
	if t := f.Traffic; t != nil {
		e.varint(t.Packets)
		e.varint(t.Bytes)
		e.varint(t.PacketsReply)
		e.varint(t.BytesReply)
	}
	if flags&(fLabelsSource|fLabelsDestination) == 0 {
		e.strMap(f.Labels)
	}
	if flags&fRare != 0 {
		e.rare(&f.ObjectMeta)
	}
	if flags&fTypeMeta != 0 {
		e.string(f.APIVersion)
		e.string(f.Kind)
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	// One map: flows of one pod share its endpoint's labels.
	if len(a) == 0 || reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer() {
		return true
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
