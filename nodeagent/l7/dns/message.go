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

package dns

import (
	"encoding/binary"
	"errors"
	"math"
	"net/netip"
	"strconv"

	"github.com/miekg/dns"
	"golang.org/x/net/dns/dnsmessage"
)

// maxQuestions bounds the questions read from one message. A QUERY has
// exactly one (RFC 9619); a message with more is read as far as
// maxQuestions and reported Partial.
const maxQuestions = 8

// maxAnswers bounds the answer records read from one message, and so a
// record's size: a 2-byte compression pointer can stand for a 255-byte
// name, so records of CNAMEs could otherwise be a hundred times larger
// than the bytes sampled. 128 answers are more than a 1232-byte EDNS
// response can hold of the smallest record that names a type (A, 16
// bytes); a message with more is reported Partial.
const maxAnswers = 128

// maxNameText is the longest name in presentation form: 254 bytes of
// labels and dots, every label byte escaped as \DDD.
const maxNameText = 255 * 4

// span is a string within a decoder's text.
type span struct{ start, end int }

// message is what the parser read of one DNS message. Its slices point
// into the decoder and live until its next decode.
type message struct {
	id       uint16
	response bool
	tc       bool
	rcode    int32

	// name, qtype and qclass are the first question's, when hasQuestion.
	hasQuestion bool
	name        []byte
	qtype       dnsmessage.Type
	qclass      dnsmessage.Class
	qtypes      []dnsmessage.Type
	// questionsDone: the whole question section was read.
	questionsDone bool

	// Responses only: the answers' addresses and CNAME targets in the
	// decoder's text, and their types.
	ips, cnames []span
	rrtypes     []dnsmessage.Type
	ttl         uint32
	// answersDone: the whole answer section was read.
	answersDone bool
	// rcodeExact: rcode holds the extended bits if there are any (an OPT
	// record was read, or the additional section was read without one).
	rcodeExact bool

	// malformed: the message was wholly sampled and still failed to
	// decode.
	malformed bool
}

// decoder reads messages. Its scratch space lets a decode allocate only
// what a record keeps: one string for all of its text, one array for all
// of its lists.
type decoder struct {
	p       dnsmessage.Parser
	name    [maxNameText]byte
	qtypes  [maxQuestions]dnsmessage.Type
	text    []byte
	ips     []span
	cnames  []span
	rrtypes []dnsmessage.Type
}

// decode reads b, the sampled prefix of a message, cut if the message is
// longer. It reports false if b is shorter than a header.
func (d *decoder) decode(b []byte, cut bool) (message, bool) {
	var m message
	h, err := d.p.Start(b)
	if err != nil {
		return m, false
	}
	m.id, m.response, m.tc, m.rcode = h.ID, h.Response, h.Truncated, int32(h.RCode)
	additionals := binary.BigEndian.Uint16(b[10:])
	// fail marks a decoding error: a malformation unless the sample ended.
	fail := func() (message, bool) {
		m.malformed = !cut
		return m, true
	}

	m.qtypes = d.qtypes[:0]
	for {
		q, err := d.p.Question()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			m.questionsDone = true
			break
		}
		if err != nil {
			return fail()
		}
		if len(m.qtypes) == maxQuestions {
			return m, true // not malformed: more than a record keeps
		}
		if !m.hasQuestion {
			m.hasQuestion = true
			m.name = appendName(d.name[:0], &q.Name)
			m.qtype, m.qclass = q.Type, q.Class
		}
		m.qtypes = append(m.qtypes, q.Type)
	}
	if !m.response {
		return m, true
	}

	d.text, d.ips, d.cnames, d.rrtypes = d.text[:0], d.ips[:0], d.cnames[:0], d.rrtypes[:0]
	ttls := false // m.ttl is the lowest TTL so far
	for {
		// Keep what was read so far in m, for fail.
		m.ips, m.cnames, m.rrtypes = d.ips, d.cnames, d.rrtypes
		rh, err := d.p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			m.answersDone = true
			break
		}
		if err != nil {
			return fail()
		}
		if len(d.rrtypes) == maxAnswers {
			return m, true // not malformed: more than a record keeps
		}
		start := len(d.text)
		switch rh.Type {
		case dnsmessage.TypeA:
			var r dnsmessage.AResource
			if r, err = d.p.AResource(); err == nil {
				d.text = netip.AddrFrom4(r.A).AppendTo(d.text)
				d.ips = append(d.ips, span{start, len(d.text)})
			}
		case dnsmessage.TypeAAAA:
			var r dnsmessage.AAAAResource
			if r, err = d.p.AAAAResource(); err == nil {
				d.text = netip.AddrFrom16(r.AAAA).AppendTo(d.text)
				d.ips = append(d.ips, span{start, len(d.text)})
			}
		case dnsmessage.TypeCNAME:
			var r dnsmessage.CNAMEResource
			if r, err = d.p.CNAMEResource(); err == nil {
				d.text = appendName(d.text, &r.CNAME)
				d.cnames = append(d.cnames, span{start, len(d.text)})
			}
		default:
			err = d.p.SkipAnswer()
		}
		if err != nil {
			return fail()
		}
		if rh.Type == dnsmessage.TypeA || rh.Type == dnsmessage.TypeAAAA || rh.Type == dnsmessage.TypeCNAME {
			// RFC 2181 §8: a TTL with the top bit set means zero.
			t := rh.TTL
			if t > math.MaxInt32 {
				t = 0
			}
			if !ttls || t < m.ttl {
				m.ttl, ttls = t, true
			}
		}
		d.rrtypes = append(d.rrtypes, rh.Type)
	}

	if additionals == 0 {
		m.rcodeExact = true
		return m, true
	}
	if err := d.p.SkipAllAuthorities(); err != nil {
		return fail()
	}
	for {
		rh, err := d.p.AdditionalHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			m.rcodeExact = true
			return m, true
		}
		if err != nil {
			return fail()
		}
		if rh.Type == dnsmessage.TypeOPT {
			m.rcode = int32(rh.ExtendedRCode(h.RCode))
			m.rcodeExact = true
			return m, true
		}
		if err := d.p.SkipAdditional(); err != nil {
			return fail()
		}
	}
}

// strings makes the strings of a response's record, and its question's
// if question, with one string and one array for them all: buf's, when
// they fit in it. The record's strings then keep each other alive, which
// costs nothing: they are written, and dropped, together.
func (d *decoder) strings(m *message, question bool, buf []string) (name string, qtypes, ips, cnames, rrtypes []string) {
	nq := 0
	if question {
		nq = len(m.qtypes)
	}
	n := nq + len(m.ips) + len(m.cnames) + len(m.rrtypes)
	if n == 0 && (!question || len(m.name) == 0) {
		return "", nil, nil, nil, nil
	}
	nameAt := len(d.text)
	if question {
		d.text = append(d.text, m.name...)
	}
	text := string(d.text)
	name = text[nameAt:]
	all := buf[:min(n, len(buf))]
	if n > len(buf) {
		all = make([]string, n)
	}
	take := func(k int) []string {
		if k == 0 {
			return nil
		}
		s := all[:k:k]
		all = all[k:]
		return s
	}
	qtypes, ips, cnames, rrtypes = take(nq), take(len(m.ips)), take(len(m.cnames)), take(len(m.rrtypes))
	for i := range qtypes {
		qtypes[i] = typeName(m.qtypes[i])
	}
	for i, s := range m.ips {
		ips[i] = text[s.start:s.end]
	}
	for i, s := range m.cnames {
		cnames[i] = text[s.start:s.end]
	}
	for i, t := range m.rrtypes {
		rrtypes[i] = typeName(t)
	}
	return name, qtypes, ips, cnames, rrtypes
}

// appendName appends n in presentation form, lowercased. dnsmessage
// refuses labels that hold a dot, so every dot in n separates labels.
func appendName(dst []byte, n *dnsmessage.Name) []byte {
	for _, c := range n.Data[:n.Length] {
		switch {
		case 'A' <= c && c <= 'Z':
			dst = append(dst, c+'a'-'A')
		case c == '\\':
			dst = append(dst, '\\', '\\')
		case c < '!' || c > '~':
			dst = append(dst, '\\', '0'+c/100, '0'+c/10%10, '0'+c%10)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// smallTypes names the types below 256 without a map lookup.
var smallTypes = func() (names [256]string) {
	for t, s := range dns.TypeToString {
		if t < 256 {
			names[t] = s
		}
	}
	return names
}()

// typeName names a record type as miekg/dns and Hubble do, and an unknown
// one as RFC 3597 does.
func typeName(t dnsmessage.Type) string {
	if t < 256 && smallTypes[t] != "" {
		return smallTypes[t]
	}
	if s, ok := dns.TypeToString[uint16(t)]; ok {
		return s
	}
	return "TYPE" + strconv.Itoa(int(t))
}
