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
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Produce, Fetch and Metadata are decoded by hand, field by field, so
// that a body sampled only in part still gives what its sampled bytes
// hold (kmsg decodes whole bodies only), without allocating. The tests
// hold these decoders equal to kmsg's on every version kmsg knows. Other
// keys are decoded with kmsg when their whole body was sampled.

// topicRef is a topic a message names, by name or by ID.
type topicRef struct {
	named   bool // a topic is named (the other fields say which)
	byID    bool
	unknown bool // its name or ID was not sampled
	name    []byte
	id      [16]byte
}

// reqBody is what a request's body tells.
type reqBody struct {
	known  bool     // whether the request names a topic is known
	topic  topicRef // the first topic it names
	noResp bool     // a Produce with acks=0: the broker will not answer
}

// respBody is what a response's body tells.
type respBody struct {
	err      int16    // the first non-zero error code in wire order
	errTopic topicRef // the topic err is a topic's or partition's code of
	errDone  bool     // every error code was read
	topLast  bool     // a top-level code follows the topics, and wins
	first    topicRef // the first topic the response names (Fetch)
}

// code notes an error code, of topic t (nil: top-level).
func (b *respBody) code(r *reader, c int16, t *topicRef) {
	if r.ok() && c != 0 && b.err == 0 {
		b.err = c
		if t != nil {
			b.errTopic = *t
		}
	}
}

// errKnown reports whether err is the response's error code.
func (b *respBody) errKnown() bool { return b.errDone || b.err != 0 && !b.topLast }

// decodedRequest reports whether requests of key carry a topic the
// parser decodes.
func decodedRequest(key int16) bool {
	switch key {
	case 0, 1, 2, 3, 8, 9:
		return true
	}
	return false
}

// decodedResponse reports whether the parser decodes the error code of
// responses of key.
func decodedResponse(key int16) bool {
	switch key {
	case 0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 17, 18, 22, 36:
		return true
	}
	return false
}

func readRequest(r *reader, key, v int16, b *reqBody) {
	switch key {
	case 0:
		readProduceRequest(r, v, b)
	case 1:
		readFetchRequest(r, v, b)
	case 3:
		readMetadataRequest(r, v, b)
	default:
		if body, ok := rest(r); ok {
			kmsgRequest(key, v, body, b)
		}
	}
}

func readResponse(r *reader, key, v int16, b *respBody, topics *Topics) {
	switch key {
	case 0:
		readProduceResponse(r, v, b)
	case 1:
		readFetchResponse(r, v, b)
	case 3:
		readMetadataResponse(r, v, b, topics)
	case 18:
		// ApiVersions: the error code leads every version's body, also
		// the v0 body a broker answers a version it does not support with.
		b.code(r, r.int16(), nil)
		b.errDone = r.ok()
	default:
		if body, ok := rest(r); ok {
			kmsgResponse(key, v, body, b)
		}
	}
}

// rest returns the rest of the body when it was sampled whole.
func rest(r *reader) ([]byte, bool) {
	n := r.rest()
	b := r.bytes(n)
	return b, r.ok() && len(b) == n
}

func readFirstTopic(r *reader, byID bool, b *reqBody) {
	n := r.length(1)
	switch {
	case !r.ok():
		return
	case n > 0:
		b.topic = r.topic(byID)
	}
	b.known = r.ok() && !b.topic.unknown
}

func readProduceRequest(r *reader, v int16, b *reqBody) {
	if v >= 3 {
		r.skipStr() // transactional_id
	}
	acks := r.int16()
	b.noResp = r.ok() && acks == 0
	r.skip(4) // timeout_ms
	readFirstTopic(r, v >= 13, b)
}

func readFetchRequest(r *reader, v int16, b *reqBody) {
	if v <= 14 {
		r.skip(4) // replica_id, a tagged field from v15
	}
	r.skip(8) // max_wait_ms, min_bytes
	if v >= 3 {
		r.skip(4) // max_bytes
	}
	if v >= 4 {
		r.skip(1) // isolation_level
	}
	if v >= 7 {
		r.skip(8) // session_id, session_epoch
	}
	readFirstTopic(r, v >= 13, b)
}

func readMetadataRequest(r *reader, v int16, b *reqBody) {
	n := r.length(1) // null (v1+) or empty (v0): all topics
	switch {
	case !r.ok():
		return
	case n > 0 && v >= 10:
		id := r.topic(true)
		// The name, when given, is the one to show; else the ID.
		if name := r.topic(false); name.named && name.name != nil || name.unknown {
			b.topic = name
		} else {
			b.topic = id
		}
	case n > 0:
		b.topic = r.topic(false)
	}
	b.known = r.ok() && !b.topic.unknown
}

func readProduceResponse(r *reader, v int16, b *respBody) {
	topics := r.length(1)
	for range max(topics, 0) {
		t := r.topic(v >= 13)
		parts := r.length(1)
		for range max(parts, 0) {
			r.skip(4) // partition_index
			b.code(r, r.int16(), &t)
			r.skip(8) // base_offset
			if v >= 2 {
				r.skip(8) // log_append_time_ms
			}
			if v >= 5 {
				r.skip(8) // log_start_offset
			}
			if v >= 8 {
				errs := r.length(1) // record_errors
				for range max(errs, 0) {
					r.skip(4)
					r.skipStr()
					r.skipTags()
				}
				r.skipStr() // error_message
			}
			r.skipTags()
		}
		r.skipTags()
	}
	b.errDone = r.ok()
}

func readFetchResponse(r *reader, v int16, b *respBody) {
	if v >= 1 {
		r.skip(4) // throttle_time_ms
	}
	if v >= 7 {
		b.code(r, r.int16(), nil)
		r.skip(4) // session_id
	}
	topics := r.length(1)
	for i := range max(topics, 0) {
		t := r.topic(v >= 13)
		if i == 0 {
			b.first = t
		}
		parts := r.length(1)
		for range max(parts, 0) {
			r.skip(4) // partition_index
			b.code(r, r.int16(), &t)
			r.skip(8) // high_watermark
			if v >= 4 {
				r.skip(8) // last_stable_offset
			}
			if v >= 5 {
				r.skip(8) // log_start_offset
			}
			if v >= 4 {
				aborted := r.length(16)
				for range max(aborted, 0) {
					r.skip(16)
					r.skipTags()
				}
			}
			if v >= 11 {
				r.skip(4) // preferred_read_replica
			}
			r.skipBytes() // records, by their length
			r.skipTags()
		}
		r.skipTags()
	}
	b.errDone = r.ok()
}

// readMetadataResponse also teaches topics the IDs the response names.
func readMetadataResponse(r *reader, v int16, b *respBody, topics *Topics) {
	if v >= 3 {
		r.skip(4) // throttle_time_ms
	}
	brokers := r.length(1)
	for range max(brokers, 0) {
		r.skip(4) // node_id
		r.skipStr()
		r.skip(4) // port
		if v >= 1 {
			r.skipStr() // rack
		}
		r.skipTags()
	}
	if v >= 2 {
		r.skipStr() // cluster_id
	}
	if v >= 1 {
		r.skip(4) // controller_id
	}
	n := r.length(1)
	for range max(n, 0) {
		c := r.int16()
		t := r.topic(false)
		if v >= 10 {
			id := r.topic(true)
			if r.ok() && !id.unknown && t.name != nil {
				topics.learn(id.id, t.name)
			}
			if t.name == nil && !t.unknown {
				t = id // v12+: a topic asked for by an ID the broker lacks
			}
		}
		b.code(r, c, &t)
		if v >= 1 {
			r.skip(1) // is_internal
		}
		parts := r.length(1)
		for range max(parts, 0) {
			b.code(r, r.int16(), &t)
			r.skip(8) // partition_index, leader_id
			if v >= 7 {
				r.skip(4) // leader_epoch
			}
			r.skipArray(4) // replica_nodes
			r.skipArray(4) // isr_nodes
			if v >= 5 {
				r.skipArray(4) // offline_replicas
			}
			r.skipTags()
		}
		if v >= 8 {
			r.skip(4) // topic_authorized_operations
		}
		r.skipTags()
	}
	if v >= 8 && v <= 10 {
		r.skip(4) // cluster_authorized_operations
	}
	if v >= 13 {
		b.topLast = true
		if c := r.int16(); r.ok() && c != 0 {
			b.err, b.errTopic = c, topicRef{}
		}
	}
	b.errDone = r.ok()
}

// kmsgRequest decodes a whole request body of the other keys that name
// topics.
func kmsgRequest(key, v int16, body []byte, b *reqBody) {
	req := kmsg.RequestForKey(key)
	if req == nil {
		return
	}
	req.SetVersion(v)
	if unsafeRead(req, body) != nil {
		return
	}
	b.known = true
	switch req := req.(type) {
	case *kmsg.ListOffsetsRequest:
		if len(req.Topics) > 0 {
			b.topic = ref(req.Topics[0].Topic, [16]byte{})
		}
	case *kmsg.OffsetCommitRequest:
		if len(req.Topics) > 0 {
			b.topic = ref(req.Topics[0].Topic, req.Topics[0].TopicID)
		}
	case *kmsg.OffsetFetchRequest:
		if len(req.Topics) > 0 {
			b.topic = ref(req.Topics[0].Topic, [16]byte{})
		}
		if len(req.Groups) > 0 && len(req.Groups[0].Topics) > 0 {
			b.topic = ref(req.Groups[0].Topics[0].Topic, req.Groups[0].Topics[0].TopicID)
		}
	}
}

// ref is a topic kmsg decoded: by name when it has one, else by ID. The
// name is copied, as kmsg's aliases the message.
func ref(name string, id [16]byte) topicRef {
	if name == "" {
		return topicRef{named: true, byID: true, id: id}
	}
	return topicRef{named: true, name: []byte(name)}
}

// kmsgResponse decodes the error code of a whole response body of the
// other keys.
func kmsgResponse(key, v int16, body []byte, b *respBody) {
	req := kmsg.RequestForKey(key)
	if req == nil {
		return
	}
	req.SetVersion(v)
	resp := req.ResponseKind()
	if unsafeRead(resp, body) != nil {
		return
	}
	b.errDone = true
	code := func(c int16, t topicRef) {
		if b.err == 0 && c != 0 {
			b.err, b.errTopic = c, t
		}
	}
	top := func(c int16) { code(c, topicRef{}) }
	switch resp := resp.(type) {
	case *kmsg.ListOffsetsResponse:
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				code(p.ErrorCode, ref(t.Topic, [16]byte{}))
			}
		}
	case *kmsg.OffsetCommitResponse:
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				code(p.ErrorCode, ref(t.Topic, t.TopicID))
			}
		}
	case *kmsg.OffsetFetchResponse:
		top(resp.ErrorCode) // v2 to v7: after the topics, and wins
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				code(p.ErrorCode, ref(t.Topic, [16]byte{}))
			}
		}
		for _, g := range resp.Groups {
			top(g.ErrorCode)
			for _, t := range g.Topics {
				for _, p := range t.Partitions {
					code(p.ErrorCode, ref(t.Topic, t.TopicID))
				}
			}
		}
	case *kmsg.FindCoordinatorResponse:
		top(resp.ErrorCode)
		for _, c := range resp.Coordinators {
			top(c.ErrorCode)
		}
	case *kmsg.JoinGroupResponse:
		top(resp.ErrorCode)
	case *kmsg.HeartbeatResponse:
		top(resp.ErrorCode)
	case *kmsg.LeaveGroupResponse:
		top(resp.ErrorCode)
		for _, m := range resp.Members {
			top(m.ErrorCode)
		}
	case *kmsg.SyncGroupResponse:
		top(resp.ErrorCode)
	case *kmsg.SASLHandshakeResponse:
		top(resp.ErrorCode)
	case *kmsg.InitProducerIDResponse:
		top(resp.ErrorCode)
	case *kmsg.SASLAuthenticateResponse:
		top(resp.ErrorCode)
	default:
		b.errDone = false
	}
}

// unsafeRead decodes without copying strings: the decoded message is
// dropped before the buffer is reused, and what is kept is copied.
func unsafeRead(m interface{ ReadFrom([]byte) error }, body []byte) error {
	if u, ok := m.(kmsg.UnsafeReadFrom); ok {
		return u.UnsafeReadFrom(body)
	}
	return m.ReadFrom(body)
}
