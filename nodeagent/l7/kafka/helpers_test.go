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
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"

	"flowscope.io/flowscope/nodeagent/l7"
)

// frameRequest is a request on the wire: size, header, body.
func frameRequest(req kmsg.Request, corr int32, clientID string) []byte {
	return kmsg.NewRequestFormatter(kmsg.FormatterClientID(clientID)).AppendRequest(nil, req, corr)
}

// frameResponse is a response on the wire, as a broker writes it: header
// v1 (an empty tag section) for flexible versions, except ApiVersions.
func frameResponse(resp kmsg.Response, corr int32) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 4), uint32(corr))
	if resp.IsFlexible() && resp.Key() != 18 {
		b = append(b, 0)
	}
	b = resp.AppendTo(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// split cuts a direction's bytes into segments of seg bytes whose first
// budget bytes are sampled (budget 0: all), from stream offset off.
func split(dir l7.Dir, t time.Time, off uint64, b []byte, seg, budget int) []l7.Chunk {
	var out []l7.Chunk
	for len(b) > 0 {
		n := min(seg, len(b))
		k := n
		if budget > 0 {
			k = min(n, budget)
		}
		out = append(out, l7.Chunk{Dir: dir, Time: t, Off: off, Len: n, Data: b[:k:k]})
		off += uint64(n)
		b = b[n:]
	}
	return out
}

// wireMessage is one message of a recorded stream.
type wireMessage struct {
	off, end int // stream offsets: the size prefix, and past the end
	body     []byte
}

// messages splits a whole recorded stream at its size prefixes.
func messages(t testing.TB, b []byte) []wireMessage {
	var out []wireMessage
	off := 0
	for off < len(b) {
		if len(b)-off < 4 {
			t.Fatalf("stream ends within a size at %d", off)
		}
		n := int(binary.BigEndian.Uint32(b[off:]))
		if off+4+n > len(b) {
			// The client closed with a message in flight.
			break
		}
		out = append(out, wireMessage{off: off, end: off + 4 + n, body: b[off+4 : off+4+n]})
		off += 4 + n
	}
	return out
}

// truth is what the parser should make of one exchange, decoded by kmsg
// from the whole stream.
type truth struct {
	key, ver int16
	corr     int32
	clientID string
	req      kmsg.Request
	resp     kmsg.Response // nil: not answered
	errCode  int16
	noResp   bool // acks=0
	reqOff   int  // client stream offset of the request
	respEnd  int  // server stream offset past the response
}

// decodeRequest reads a whole request message with kmsg.
func decodeRequest(t testing.TB, body []byte) (truth, []byte) {
	r := kbin.Reader{Src: body}
	tr := truth{key: r.Int16(), ver: r.Int16(), corr: r.Int32()}
	if headerHasClientID(tr.key, tr.ver) {
		if id := r.NullableString(); id != nil {
			tr.clientID = *id
		}
	}
	tr.req = kmsg.RequestForKey(tr.key)
	if tr.req == nil {
		t.Fatalf("request key %d: kmsg does not know it", tr.key)
	}
	tr.req.SetVersion(tr.ver)
	if tr.req.IsFlexible() {
		kmsg.SkipTags(&r)
	}
	if err := tr.req.ReadFrom(r.Src); err != nil {
		t.Fatalf("%s v%d: %v", kmsg.NameForKey(tr.key), tr.ver, err)
	}
	if p, ok := tr.req.(*kmsg.ProduceRequest); ok && p.Acks == 0 {
		tr.noResp = true
	}
	return tr, r.Src
}

// decodeResponse reads a whole response body (after the correlation id)
// for its request.
func decodeResponse(t testing.TB, tr *truth, body []byte) {
	r := kbin.Reader{Src: body}
	if tr.key != 18 && tr.req.IsFlexible() {
		kmsg.SkipTags(&r)
	}
	if tr.key == 18 {
		// A broker answers an ApiVersions version it lacks with a v0 body
		// that only the error code, leading every version, tells apart.
		tr.errCode = int16(binary.BigEndian.Uint16(r.Src))
		return
	}
	resp := tr.req.ResponseKind()
	if err := resp.ReadFrom(r.Src); err != nil {
		t.Fatalf("%s v%d response: %v", kmsg.NameForKey(tr.key), tr.ver, err)
	}
	tr.resp = resp
}

// expected is the package's rules applied to kmsg's decoding: the error
// code (the first non-zero in wire order, or a trailing top-level one),
// and the topic: the one the error code is about, else the first the
// request names, else, for a Fetch, the first its response names.
func expected(tr *truth, names map[[16]byte]string) (int16, string) {
	if tr.key == 18 {
		return tr.errCode, ""
	}
	var code int16
	var errTopic *string
	byName := func(s string, id [16]byte) string {
		if s != "" {
			return s
		}
		return names[id]
	}
	note := func(c int16, topic *string) {
		if code == 0 && c != 0 {
			code, errTopic = c, topic
		}
	}
	switch resp := tr.resp.(type) {
	case nil:
	case *kmsg.ProduceResponse:
		for _, t := range resp.Topics {
			name := byName(t.Topic, t.TopicID)
			for _, p := range t.Partitions {
				note(p.ErrorCode, &name)
			}
		}
	case *kmsg.FetchResponse:
		note(resp.ErrorCode, nil)
		for _, t := range resp.Topics {
			name := byName(t.Topic, t.TopicID)
			for _, p := range t.Partitions {
				note(p.ErrorCode, &name)
			}
		}
	case *kmsg.MetadataResponse:
		for _, t := range resp.Topics {
			name := names[t.TopicID]
			if t.Topic != nil {
				name = *t.Topic
			}
			note(t.ErrorCode, &name)
			for _, p := range t.Partitions {
				note(p.ErrorCode, &name)
			}
		}
		if resp.ErrorCode != 0 {
			code, errTopic = resp.ErrorCode, nil
		}
	default:
		var b respBody
		kmsgResponse(resp.Key(), resp.GetVersion(), resp.AppendTo(nil), &b)
		code = b.err
		if b.errTopic.named {
			name := byName(string(b.errTopic.name), b.errTopic.id)
			errTopic = &name
		}
	}
	if errTopic != nil {
		return code, *errTopic
	}
	switch req := tr.req.(type) {
	case *kmsg.ProduceRequest:
		if len(req.Topics) > 0 {
			return code, byName(req.Topics[0].Topic, req.Topics[0].TopicID)
		}
	case *kmsg.FetchRequest:
		if len(req.Topics) > 0 {
			return code, byName(req.Topics[0].Topic, req.Topics[0].TopicID)
		}
		if resp, ok := tr.resp.(*kmsg.FetchResponse); ok && len(resp.Topics) > 0 {
			return code, byName(resp.Topics[0].Topic, resp.Topics[0].TopicID)
		}
	case *kmsg.MetadataRequest:
		if len(req.Topics) > 0 {
			name := ""
			if req.Topics[0].Topic != nil {
				name = *req.Topics[0].Topic
			}
			return code, byName(name, req.Topics[0].TopicID)
		}
	default:
		var b reqBody
		kmsgRequest(tr.key, tr.ver, tr.req.AppendTo(nil), &b)
		if b.topic.named {
			return code, byName(string(b.topic.name), b.topic.id)
		}
	}
	return code, ""
}

// learnNames collects the topic IDs of a Metadata response.
func learnNames(resp kmsg.Response, names map[[16]byte]string) {
	if m, ok := resp.(*kmsg.MetadataResponse); ok {
		for _, t := range m.Topics {
			if t.Topic != nil && t.TopicID != ([16]byte{}) {
				names[t.TopicID] = *t.Topic
			}
		}
	}
}

func describe(ex l7.Exchange) string {
	k := ex.Record.Kafka
	if k == nil {
		return fmt.Sprintf("%+v", ex)
	}
	return fmt.Sprintf("%s v%d corr=%d client=%q topic=%q err=%d partial=%v answered=%v",
		k.APIKey, k.APIVersion, k.CorrelationID, k.ClientID, k.Topic, k.ErrorCode, ex.Partial, !ex.Response.IsZero())
}
