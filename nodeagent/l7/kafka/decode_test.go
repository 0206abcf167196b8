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
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

var (
	alphaID = [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	betaID  = [16]byte{16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1}
	ids     = [][16]byte{alphaID, betaID}
)

// sample is a message as the datapath may have sampled it: the body
// bytes of the given spans, in order.
func sample(body []byte, spans ...[2]int) *message {
	m := &message{size: len(body), buf: body, limit: len(body)}
	for _, s := range spans {
		switch n := len(m.spans); {
		case s[1] <= s[0]:
		case n > 0 && m.spans[n-1].off+m.spans[n-1].n == s[0]:
			m.spans[n-1].n += s[1] - s[0] // adjacent runs merge, as in add
		default:
			m.spans = append(m.spans, span{off: s[0], at: s[0], n: s[1] - s[0]})
		}
	}
	return m
}

// segments samples the first keep[i] bytes of each 1448-byte segment.
func segments(body []byte, rng *rand.Rand) *message {
	var spans [][2]int
	for off := 0; off < len(body); off += segment {
		end := min(off+segment, len(body))
		if k := rng.IntN(end - off + 1); k > 0 {
			spans = append(spans, [2]int{off, off + k})
		}
	}
	return sample(body, spans...)
}

func ref2(name string, id [16]byte, byID bool) topicRef {
	if byID {
		return topicRef{named: true, byID: true, id: id}
	}
	return topicRef{named: true, name: []byte(name)}
}

func sameRef(got, want topicRef) bool {
	return got.named == want.named && got.byID == want.byID && bytes.Equal(got.name, want.name) && got.id == want.id
}

func (t topicRef) String() string {
	switch {
	case !t.named:
		return "none"
	case t.unknown:
		return "unknown"
	case t.byID:
		return fmt.Sprintf("id %x", t.id[:4])
	}
	return fmt.Sprintf("%q", t.name)
}

// produceCase, fetchCase and metadataCase build a request and response
// of every field the decoders pass, at version v; variant moves the
// error code around.
func produceCase(v int16, variant int) (kmsg.Request, kmsg.Response, topicRef, int16, topicRef) {
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(v)
	req.TransactionID = kmsg.StringPtr("txn-α")
	req.Acks = -1
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	codes := [][]int16{{0, 0}, {0, 0}}
	switch variant {
	case 1:
		codes[0][1] = 6 // NOT_LEADER_OR_FOLLOWER
	case 2:
		codes[1][0] = 10 // MESSAGE_TOO_LARGE
	case 3:
		req.Acks = 0
	}
	for i, name := range []string{"alpha", "beta"} {
		id := ids[i]
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic, rt.TopicID = name, id
		st := kmsg.NewProduceResponseTopic()
		st.Topic, st.TopicID = name, id
		for p := range 2 {
			rp := kmsg.NewProduceRequestTopicPartition()
			rp.Partition, rp.Records = int32(p), bytes.Repeat([]byte{byte(p)}, 700)
			rt.Partitions = append(rt.Partitions, rp)
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition, sp.ErrorCode = int32(p), codes[i][p]
			sp.ErrorMessage = kmsg.StringPtr("some message")
			re := kmsg.NewProduceResponseTopicPartitionErrorRecord()
			re.RelativeOffset, re.ErrorMessage = 3, kmsg.StringPtr("bad record")
			sp.ErrorRecords = append(sp.ErrorRecords, re)
			st.Partitions = append(st.Partitions, sp)
		}
		req.Topics = append(req.Topics, rt)
		resp.Topics = append(resp.Topics, st)
	}
	var code int16
	var errTopic topicRef
	for i, t := range codes {
		for _, c := range t {
			if code == 0 && c != 0 {
				code, errTopic = c, ref2([]string{"alpha", "beta"}[i], ids[i], v >= 13)
			}
		}
	}
	return req, resp, ref2("alpha", alphaID, v >= 13), code, errTopic
}

func fetchCase(v int16, variant int) (kmsg.Request, kmsg.Response, topicRef, int16, topicRef) {
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(v)
	req.Rack = "rack-1"
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	codes := [][]int16{{0, 0}, {0, 0}}
	var code int16
	var errTopic topicRef
	switch variant {
	case 1:
		codes[1][1] = 1 // OFFSET_OUT_OF_RANGE
		code, errTopic = 1, ref2("beta", betaID, v >= 13)
	case 2:
		if v >= 7 {
			resp.ErrorCode = 70 // FETCH_SESSION_ID_NOT_FOUND
			code = 70
		}
	}
	names := []string{"alpha", "beta"}
	if variant == 3 {
		names = nil // an incremental fetch: no topics
	}
	for i, name := range names {
		id := ids[i]
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = name, id
		st := kmsg.NewFetchResponseTopic()
		st.Topic, st.TopicID = name, id
		for p := range 2 {
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.Partition = int32(p)
			rt.Partitions = append(rt.Partitions, rp)
			sp := kmsg.NewFetchResponseTopicPartition()
			sp.Partition, sp.ErrorCode = int32(p), codes[i][p]
			sp.RecordBatches = bytes.Repeat([]byte{byte(p)}, 900)
			at := kmsg.NewFetchResponseTopicPartitionAbortedTransaction()
			sp.AbortedTransactions = append(sp.AbortedTransactions, at)
			st.Partitions = append(st.Partitions, sp)
		}
		req.Topics = append(req.Topics, rt)
		resp.Topics = append(resp.Topics, st)
	}
	ft := kmsg.NewFetchRequestForgottenTopic()
	ft.Topic, ft.TopicID, ft.Partitions = "gamma", betaID, []int32{4}
	req.ForgottenTopics = append(req.ForgottenTopics, ft)
	first := topicRef{}
	if names != nil {
		first = ref2("alpha", alphaID, v >= 13)
	}
	return req, resp, first, code, errTopic
}

func metadataCase(v int16, variant int) (kmsg.Request, kmsg.Response, topicRef, int16, topicRef) {
	req := kmsg.NewPtrMetadataRequest()
	req.SetVersion(v)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	first := topicRef{}
	switch {
	case variant == 3 && v >= 1:
		req.Topics = nil // all topics
	case variant == 2 && v >= 10:
		rt := kmsg.NewMetadataRequestTopic()
		rt.TopicID = alphaID // by ID, no name
		req.Topics = append(req.Topics, rt)
		first = ref2("", alphaID, true)
	default:
		for _, name := range []string{"alpha", "beta"} {
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(name)
			req.Topics = append(req.Topics, rt)
		}
		first = ref2("alpha", alphaID, false)
	}
	for i := range 2 {
		b := kmsg.NewMetadataResponseBroker()
		b.NodeID, b.Host, b.Port, b.Rack = int32(i), fmt.Sprintf("broker-%d.kafka.svc", i), 9092, kmsg.StringPtr("rack")
		resp.Brokers = append(resp.Brokers, b)
	}
	resp.ClusterID = kmsg.StringPtr("cluster")
	var code int16
	var errTopic topicRef
	for i, name := range []string{"alpha", "beta"} {
		st := kmsg.NewMetadataResponseTopic()
		st.Topic, st.TopicID = kmsg.StringPtr(name), ids[i]
		for p := range 3 {
			sp := kmsg.NewMetadataResponseTopicPartition()
			sp.Partition, sp.Replicas, sp.ISR, sp.OfflineReplicas = int32(p), []int32{0, 1}, []int32{0}, []int32{1}
			if variant == 1 && i == 1 && p == 2 {
				sp.ErrorCode = 9 // REPLICA_NOT_AVAILABLE
				code, errTopic = 9, ref2(name, [16]byte{}, false)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	if variant == 2 && v >= 13 {
		resp.ErrorCode = 58 // SASL_AUTHENTICATION_FAILED: top-level, last, and wins
		code, errTopic = 58, topicRef{}
	}
	if variant == 0 && v == 0 {
		resp.Topics[0].ErrorCode = 3
		code, errTopic = 3, ref2("alpha", [16]byte{}, false)
	}
	return req, resp, first, code, errTopic
}

type decodeCase func(v int16, variant int) (kmsg.Request, kmsg.Response, topicRef, int16, topicRef)

// TestDecodeVersions holds the hand-written decoders to kmsg's encoding
// of every version of Produce, Fetch and Metadata: exact on whole bodies,
// and on sampled parts never wrong, only unknown, and never malformed.
func TestDecodeVersions(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for key, build := range map[int16]decodeCase{0: produceCase, 1: fetchCase, 3: metadataCase} {
		for v := int16(0); v <= apiKeys[key].max; v++ {
			for variant := range 4 {
				name := fmt.Sprintf("%s/v%d/variant%d", APIKeyName(key), v, variant)
				req, resp, wantTopic, wantErr, wantErrTopic := build(v, variant)
				reqWire, respWire := req.AppendTo(nil), resp.AppendTo(nil)
				// The encoding round-trips through kmsg: the cases are real.
				if err := req.ResponseKind().RequestKind().ReadFrom(reqWire); err != nil {
					t.Fatalf("%s: kmsg rejects its own request: %v", name, err)
				}
				topics := NewTopics(8)
				check := func(how string, rm, sm *message, whole bool) {
					t.Helper()
					r := reader{m: rm, flex: flexibleRequest(key, v)}
					var rb reqBody
					readRequest(&r, key, v, &rb)
					switch {
					case r.st == readBad:
						t.Fatalf("%s %s: request malformed at %d", name, how, r.pos)
					case whole && !rb.known:
						t.Fatalf("%s %s: request topic unknown", name, how)
					case rb.known && !sameRef(rb.topic, wantTopic):
						t.Fatalf("%s %s: request topic %v, want %v", name, how, rb.topic, wantTopic)
					case key == 0 && rb.known && rb.noResp != (variant == 3):
						t.Fatalf("%s %s: acks=0 %v", name, how, rb.noResp)
					}
					r = reader{m: sm, flex: flexibleRequest(key, v)}
					topics.names = map[[16]byte]string{}
					var b respBody
					readResponse(&r, key, v, &b, topics)
					switch {
					case r.st == readBad:
						t.Fatalf("%s %s: response malformed at %d", name, how, r.pos)
					case whole && !b.errDone:
						t.Fatalf("%s %s: response not read to the end", name, how)
					case b.errKnown() && b.err != wantErr:
						t.Fatalf("%s %s: error code %d, want %d", name, how, b.err, wantErr)
					case b.errKnown() && b.err != 0 && !b.errTopic.unknown && !sameRef(b.errTopic, wantErrTopic):
						t.Fatalf("%s %s: error topic %v, want %v", name, how, b.errTopic, wantErrTopic)
					case key == 1 && b.first.named && !b.first.unknown && !sameRef(b.first, wantTopic):
						t.Fatalf("%s %s: response's first topic %v, want %v", name, how, b.first, wantTopic)
					case key == 1 && whole && wantTopic.named != b.first.named:
						t.Fatalf("%s %s: response's first topic %v, want %v", name, how, b.first, wantTopic)
					}
					if key == 3 && v >= 10 && whole {
						if n, ok := topics.Name(betaID); !ok || n != "beta" {
							t.Fatalf("%s %s: Metadata taught %q for beta's ID", name, how, n)
						}
					}
				}
				check("whole", sample(reqWire, [2]int{0, len(reqWire)}), sample(respWire, [2]int{0, len(respWire)}), true)
				// Every cut within the first 512 bytes (the default budget),
				// where headers and names lie; every 7th beyond.
				for n := 0; n < max(len(reqWire), len(respWire)); n++ {
					if n > 512 && n%7 != 0 {
						continue
					}
					check(fmt.Sprintf("prefix %d", n),
						sample(reqWire, [2]int{0, min(n, len(reqWire))}), sample(respWire, [2]int{0, min(n, len(respWire))}), false)
				}
				for i := range 20 {
					check(fmt.Sprintf("segments %d", i), segments(reqWire, rng), segments(respWire, rng), false)
				}
			}
		}
	}
}

// TestReaderSkipsUnsampled: a field of known length is passed whether or
// not it was sampled; one that was not sampled stops the reader short.
func TestReaderSkipsUnsampled(t *testing.T) {
	body := []byte{0, 3, 'a', 'b', 'c', 0, 0, 0, 7, 0, 2, 'x', 'y'}
	m := sample(body, [2]int{0, 2}, [2]int{5, 9}, [2]int{9, 10})
	r := reader{m: m}
	r.skipStr()
	if got := r.int32(); !r.ok() || got != 7 {
		t.Fatalf("after an unsampled string: %d, state %d", got, r.st)
	}
	if got := r.str(); r.st != readShort || got != nil {
		t.Fatalf("a string whose length was half sampled: %q, state %d", got, r.st)
	}
	r = reader{m: sample(body, [2]int{0, 5})}
	r.skip(len(body))
	if r.skip(1); r.st != readBad {
		t.Fatalf("past the end: state %d", r.st)
	}
	r = reader{m: sample(body, [2]int{0, len(body)})}
	r.int16()
	if t1, t2 := r.field(3); !bytes.Equal(t1, []byte("abc")) || !t2 {
		t.Fatalf("field: %q %v", t1, t2)
	}
}

// TestMessageAdd: runs of sampled bytes merge when adjacent; beyond the
// limit, or maxSpans runs, bytes are dropped and the message says so.
func TestMessageAdd(t *testing.T) {
	var m message
	m.reset(100, 10)
	m.add(0, []byte("abc"))
	m.add(3, []byte("de"))
	m.add(10, []byte("xyz"))
	if len(m.spans) != 2 || m.spans[0] != (span{0, 0, 5}) || m.spans[1] != (span{10, 5, 3}) || m.dropped {
		t.Fatalf("spans %v, dropped %v", m.spans, m.dropped)
	}
	m.add(20, []byte("12345"))
	if string(m.buf) != "abcdexyz12" || !m.dropped {
		t.Fatalf("buf %q, dropped %v", m.buf, m.dropped)
	}
	m.reset(1000, 1000)
	for i := range maxSpans + 1 {
		m.add(2*i, []byte{byte(i)})
	}
	if len(m.spans) != maxSpans || !m.dropped {
		t.Fatalf("%d spans, dropped %v", len(m.spans), m.dropped)
	}
}
