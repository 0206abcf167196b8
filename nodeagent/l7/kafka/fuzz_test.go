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

package kafka

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kmsg"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/l7"
)

// A fuzz input is a flags byte (bit 0: the handshake was seen; bits 1-2:
// the sampling budget) and then chunks: a byte whose bit 0 is the
// direction and whose other bits are unsampled bytes before the chunk, a
// 2-byte length, the bytes.
var budgets = [4]int{0, 16, 64, 512}

func appendChunk(dst []byte, dir l7.Dir, gap int, b []byte) []byte {
	dst = append(dst, byte(dir)|byte(gap<<1))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(b)))
	return append(dst, b...)
}

// conversation is a seed: a client's usual requests and their answers.
func conversation(v int16) []byte {
	out := []byte{1}
	add := func(req kmsg.Request, resp kmsg.Response, corr int32) {
		out = appendChunk(out, l7.FromClient, 0, frameRequest(req, corr, "seed"))
		out = appendChunk(out, l7.FromServer, 0, frameResponse(resp, corr))
	}
	av := apiVersionsRequest(3)
	add(av, av.ResponseKind(), 0)
	_, mresp, _, _, _ := metadataCase(min(v, 13), 1)
	mreq := mresp.RequestKind()
	add(mreq, mresp, 1)
	preq, presp, _, _, _ := produceCase(min(v, 13), 2)
	add(preq, presp, 2)
	freq, fresp, _, _, _ := fetchCase(min(v+4, 18), 1)
	add(freq, fresp, 3)
	return out
}

func FuzzKafka(f *testing.F) {
	for _, v := range []int16{0, 4, 9, 12, 13} {
		c := conversation(v)
		f.Add(c)
		for i := range budgets {
			f.Add(append([]byte{c[0] | byte(i<<1)}, c[1:]...))
		}
	}
	p := New(Options{MaxPending: 8, MaxMessageBytes: 4096})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		c := p.New(l7.Start{FromHandshake: data[0]&1 == 1}).(*conn)
		budget := budgets[data[0]>>1&3]
		data = data[1:]
		var off [2]uint64
		now := t0
		check := func(got []l7.Exchange) {
			for _, ex := range got {
				k := ex.Record.Kafka
				if ex.Record.Type != v1alpha1.L7TypeKafka || k == nil || ex.Record.Partial != ex.Partial {
					t.Fatalf("record %+v", ex)
				}
				if k.Topic != "" && !validTopic(k.Topic) || !utf8.ValidString(k.ClientID) {
					t.Fatalf("record %s", describe(ex))
				}
				if ex.Request.IsZero() && ex.Response.IsZero() {
					t.Fatalf("no times: %s", describe(ex))
				}
			}
			if len(c.pending) > p.maxPending {
				t.Fatalf("%d pending", len(c.pending))
			}
			for _, s := range c.sides {
				if len(s.m.buf) > p.maxMessage || len(s.m.spans) > maxSpans {
					t.Fatalf("kept %d bytes in %d spans", len(s.m.buf), len(s.m.spans))
				}
			}
		}
		for len(data) >= 3 {
			dir, gap := l7.Dir(data[0]&1), uint64(data[0]>>1)
			n := min(int(binary.BigEndian.Uint16(data[1:])), len(data)-3)
			b := data[3 : 3+n]
			data = data[3+n:]
			off[dir] += gap
			now = now.Add(time.Millisecond)
			for _, ch := range split(dir, now, off[dir], b, segment, budget) {
				check(c.Feed(ch))
			}
			off[dir] += uint64(n)
		}
		check(c.Expire(now.Add(time.Hour), time.Second))
		if len(c.pending) != 0 {
			t.Fatalf("%d pending after expiring all", len(c.pending))
		}
	})
}

// FuzzDecode holds the hand-written decoders to kmsg on whatever kmsg
// decodes: the same first topic, error code and error topic.
func FuzzDecode(f *testing.F) {
	for key, build := range map[int16]decodeCase{0: produceCase, 1: fetchCase, 3: metadataCase} {
		for _, v := range []int16{0, 3, 9, 12, 13} {
			for variant := range 4 {
				req, resp, _, _, _ := build(min(v, apiKeys[key].max), variant)
				f.Add(byte(key), byte(req.GetVersion()), false, req.AppendTo(nil))
				f.Add(byte(key), byte(req.GetVersion()), true, resp.AppendTo(nil))
			}
		}
	}
	f.Fuzz(func(t *testing.T, key, version byte, isResp bool, body []byte) {
		k := []int16{0, 1, 3}[int(key)%3]
		v := int16(version) % (apiKeys[k].max + 1)
		m := sample(body, [2]int{0, len(body)})
		r := reader{m: m, flex: flexibleRequest(k, v)}
		req := kmsg.RequestForKey(k)
		req.SetVersion(v)
		if !isResp {
			if req.ReadFrom(body) != nil {
				return
			}
			var b reqBody
			readRequest(&r, k, v, &b)
			want := firstTopic(req)
			if !b.known || !sameRef(b.topic, want) {
				t.Fatalf("%s v%d: topic %v (known %v), kmsg %v", APIKeyName(k), v, b.topic, b.known, want)
			}
			return
		}
		resp := req.ResponseKind()
		if resp.ReadFrom(body) != nil {
			return
		}
		var b respBody
		readResponse(&r, k, v, &b, NewTopics(4))
		tr := truth{key: k, ver: v, req: req, resp: resp}
		wantErr, _ := expected(&tr, nil)
		if !b.errKnown() || b.err != wantErr {
			t.Fatalf("%s v%d: error code %d (known %v), kmsg %d", APIKeyName(k), v, b.err, b.errKnown(), wantErr)
		}
	})
}

// firstTopic is the first topic a Produce, Fetch or Metadata request
// names, by kmsg.
func firstTopic(req kmsg.Request) topicRef {
	switch req := req.(type) {
	case *kmsg.ProduceRequest:
		if len(req.Topics) > 0 {
			t := req.Topics[0]
			return ref2(t.Topic, t.TopicID, req.Version >= 13)
		}
	case *kmsg.FetchRequest:
		if len(req.Topics) > 0 {
			t := req.Topics[0]
			return ref2(t.Topic, t.TopicID, req.Version >= 13)
		}
	case *kmsg.MetadataRequest:
		if len(req.Topics) > 0 {
			t := req.Topics[0]
			if t.Topic == nil {
				return ref2("", t.TopicID, true)
			}
			return topicRef{named: true, name: bytes.Clone([]byte(*t.Topic))}
		}
	}
	return topicRef{}
}
