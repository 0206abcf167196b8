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
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/l7"
)

var t0 = time.Date(2026, 3, 2, 9, 15, 0, 0, time.UTC)

// stream feeds one connection's messages as chunks, tracking each
// direction's offset.
type stream struct {
	c   l7.Conn
	off [2]uint64
	now time.Time
	out []l7.Exchange
}

func newStream(p *Protocol, s l7.Start) *stream {
	return &stream{c: p.New(s), now: t0}
}

// send feeds b as segments whose first budget bytes are sampled (0: all),
// a millisecond after the last.
func (s *stream) send(dir l7.Dir, b []byte, budget int) {
	s.now = s.now.Add(time.Millisecond)
	for _, ch := range split(dir, s.now, s.off[dir], b, segment, budget) {
		s.out = append(s.out, s.c.Feed(ch)...)
	}
	s.off[dir] += uint64(len(b))
}

// skip passes n bytes of dir that the datapath never sampled.
func (s *stream) skip(dir l7.Dir, n int) { s.off[dir] += uint64(n) }

func (s *stream) take() []l7.Exchange {
	out := s.out
	s.out = nil
	return out
}

func apiVersionsRequest(v int16) kmsg.Request {
	req := kmsg.NewPtrApiVersionsRequest()
	req.SetVersion(v)
	req.ClientSoftwareName, req.ClientSoftwareVersion = "kgo", "1.0"
	return req
}

func produceRequest(v int16, acks int16, topic string) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(v)
	req.Acks = acks
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = []byte("records")
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

func produceResponse(req *kmsg.ProduceRequest, code int16) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		sp := kmsg.NewProduceResponseTopicPartition()
		sp.ErrorCode = code
		st.Partitions = append(st.Partitions, sp)
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func one(t *testing.T, got []l7.Exchange) l7.Exchange {
	t.Helper()
	if len(got) != 1 {
		var s []string
		for _, ex := range got {
			s = append(s, describe(ex))
		}
		t.Fatalf("got %d exchanges, want 1: %v", len(got), s)
	}
	return got[0]
}

func wantKafka(t *testing.T, ex l7.Exchange, want v1alpha1.Kafka, partial bool) {
	t.Helper()
	if ex.Record.Type != v1alpha1.L7TypeKafka || ex.Record.Kafka == nil {
		t.Fatalf("not a Kafka record: %+v", ex.Record)
	}
	if *ex.Record.Kafka != want || ex.Partial != partial || ex.Record.Partial != partial {
		t.Fatalf("got %s, want %+v partial=%v", describe(ex), want, partial)
	}
}

// TestApiVersionsHeaderV0: an ApiVersions response has no tagged fields
// in its header even at a flexible version; reading one would take the
// error code's first byte for an empty tag section.
func TestApiVersionsHeaderV0(t *testing.T) {
	s := newStream(New(Options{}), l7.Start{FromHandshake: true})
	s.send(l7.FromClient, frameRequest(apiVersionsRequest(4), 7, "app"), 0)
	// UNSUPPORTED_VERSION, as a broker answers with a v0 body.
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.ErrorCode = 35
	s.send(l7.FromServer, frameResponse(resp, 7), 0)
	wantKafka(t, one(t, s.take()), v1alpha1.Kafka{APIKey: "apiversions", APIVersion: 4, CorrelationID: 7, ClientID: "app", ErrorCode: 35}, false)

	s.send(l7.FromClient, frameRequest(apiVersionsRequest(3), 8, "app"), 0)
	resp = kmsg.NewPtrApiVersionsResponse()
	resp.SetVersion(3)
	resp.ApiKeys = append(resp.ApiKeys, kmsg.ApiVersionsResponseApiKey{ApiKey: 0, MaxVersion: 13})
	s.send(l7.FromServer, frameResponse(resp, 8), 0)
	ex := one(t, s.take())
	wantKafka(t, ex, v1alpha1.Kafka{APIKey: "apiversions", APIVersion: 3, CorrelationID: 8, ClientID: "app"}, false)
	if !ex.Response.After(ex.Request) {
		t.Fatalf("request %v, response %v", ex.Request, ex.Response)
	}
}

// TestPairing: responses pair with their requests by correlation id,
// whatever order they come in, and keep the request's key and version.
func TestPairing(t *testing.T) {
	s := newStream(New(Options{}), l7.Start{FromHandshake: true})
	reqs := []*kmsg.ProduceRequest{produceRequest(9, -1, "a"), produceRequest(3, 1, "b"), produceRequest(13, -1, "c")}
	reqs[2].Topics[0].TopicID = alphaID
	// Pipelined: three requests before the first response.
	for i, req := range reqs {
		s.send(l7.FromClient, frameRequest(req, int32(100+i), "app"), 0)
	}
	if got := s.take(); len(got) != 0 {
		t.Fatalf("exchanges before any response: %v", got)
	}
	for _, i := range []int{1, 0, 2} {
		s.send(l7.FromServer, frameResponse(produceResponse(reqs[i], int16(i)), int32(100+i)), 0)
	}
	got := s.take()
	if len(got) != 3 {
		t.Fatalf("got %d exchanges", len(got))
	}
	wantKafka(t, got[0], v1alpha1.Kafka{APIKey: "produce", APIVersion: 3, CorrelationID: 101, ClientID: "app", Topic: "b", ErrorCode: 1}, false)
	wantKafka(t, got[1], v1alpha1.Kafka{APIKey: "produce", APIVersion: 9, CorrelationID: 100, ClientID: "app", Topic: "a"}, false)
	// Produce v13 names its topic by ID, and no Metadata response named it.
	wantKafka(t, got[2], v1alpha1.Kafka{APIKey: "produce", APIVersion: 13, CorrelationID: 102, ClientID: "app", ErrorCode: 2}, true)
}

// TestAcksZero: a produce request with acks=0 gets no response, so its
// record comes at once, complete.
func TestAcksZero(t *testing.T) {
	s := newStream(New(Options{}), l7.Start{FromHandshake: true})
	s.send(l7.FromClient, frameRequest(produceRequest(7, 0, "fire"), 1, "app"), 0)
	ex := one(t, s.take())
	wantKafka(t, ex, v1alpha1.Kafka{APIKey: "produce", APIVersion: 7, CorrelationID: 1, ClientID: "app", Topic: "fire"}, false)
	if !ex.Response.IsZero() {
		t.Fatalf("a response time for acks=0: %v", ex.Response)
	}
	if got := s.c.Expire(t0.Add(time.Hour), time.Second); len(got) != 0 {
		t.Fatalf("acks=0 waited on: %v", got)
	}
}

// TestExpire: a request without response becomes a record after the
// timeout, not before; Partial when the server side lost sync meanwhile,
// as its response may have gone unseen.
func TestExpire(t *testing.T) {
	s := newStream(New(Options{}), l7.Start{FromHandshake: true})
	s.send(l7.FromClient, frameRequest(produceRequest(9, -1, "slow"), 1, "app"), 0)
	reqAt := s.now
	if got := s.c.Expire(reqAt.Add(time.Second), time.Second); len(got) != 0 {
		t.Fatalf("expired at the timeout: %v", got)
	}
	ex := one(t, s.c.Expire(reqAt.Add(time.Second+1), time.Second))
	wantKafka(t, ex, v1alpha1.Kafka{APIKey: "produce", APIVersion: 9, CorrelationID: 1, ClientID: "app", Topic: "slow"}, false)
	if !ex.Request.Equal(reqAt) || !ex.Response.IsZero() {
		t.Fatalf("times %v %v", ex.Request, ex.Response)
	}

	s.send(l7.FromClient, frameRequest(produceRequest(9, -1, "lost"), 2, "app"), 0)
	s.skip(l7.FromServer, 100) // a response's size was never sampled
	s.send(l7.FromServer, []byte("later bytes"), 0)
	ex = one(t, s.c.Expire(s.now.Add(time.Minute), time.Second))
	wantKafka(t, ex, v1alpha1.Kafka{APIKey: "produce", APIVersion: 9, CorrelationID: 2, ClientID: "app", Topic: "lost"}, true)
}

// TestMaxPending: a connection waits on at most MaxPending requests; the
// oldest is given up, Partial, to make room.
func TestMaxPending(t *testing.T) {
	p := New(Options{MaxPending: 4})
	s := newStream(p, l7.Start{FromHandshake: true})
	for i := range 6 {
		s.send(l7.FromClient, frameRequest(produceRequest(9, -1, "t"), int32(i), "app"), 0)
	}
	got := s.take()
	if len(got) != 2 || got[0].Record.Kafka.CorrelationID != 0 || got[1].Record.Kafka.CorrelationID != 1 || !got[0].Partial {
		t.Fatalf("given up: %v", got)
	}
	if n := len(s.c.(*conn).pending); n != 4 {
		t.Fatalf("%d pending", n)
	}
	if n := p.Stats().DroppedRequests.Load(); n != 2 {
		t.Fatalf("DroppedRequests %d", n)
	}
}

// TestOrphanResponse: a response to a request that was not seen is a
// Partial record with its correlation id.
func TestOrphanResponse(t *testing.T) {
	p := New(Options{})
	s := newStream(p, l7.Start{FromHandshake: true})
	s.send(l7.FromServer, frameResponse(produceResponse(produceRequest(9, -1, "t"), 0), 42), 0)
	ex := one(t, s.take())
	wantKafka(t, ex, v1alpha1.Kafka{CorrelationID: 42}, true)
	if !ex.Request.IsZero() || ex.Response.IsZero() {
		t.Fatalf("times %v %v", ex.Request, ex.Response)
	}
	if n := p.Stats().Orphans.Load(); n != 1 {
		t.Fatalf("Orphans %d", n)
	}
}

// TestBodyGaps: the unsampled rest of a large message is skipped by its
// size, and the next message is read.
func TestBodyGaps(t *testing.T) {
	s := newStream(New(Options{}), l7.Start{FromHandshake: true})
	big := produceRequest(9, -1, "big")
	big.Topics[0].Partitions[0].Records = bytes.Repeat([]byte("r"), 10000)
	for corr, budget := range []int{512, 64, 16} {
		s.send(l7.FromClient, frameRequest(big, int32(corr), "app"), budget)
		s.send(l7.FromServer, frameResponse(produceResponse(big, 0), int32(corr)), budget)
		ex := one(t, s.take())
		// 16 bytes hold the header up to the client id's length: the
		// client id, topic and error code were not sampled.
		if budget == 16 {
			wantKafka(t, ex, v1alpha1.Kafka{APIKey: "produce", APIVersion: 9, CorrelationID: int32(corr)}, true)
			continue
		}
		wantKafka(t, ex, v1alpha1.Kafka{APIKey: "produce", APIVersion: 9, CorrelationID: int32(corr), ClientID: "app", Topic: "big"}, false)
	}
}

// TestResync: joining mid-stream, or losing a message's size, the parser
// waits for a plausible message start: a request continuing the
// correlation ids with the same client id, a response to a pending
// request.
func TestResync(t *testing.T) {
	p := New(Options{})
	s := newStream(p, l7.Start{})
	req := produceRequest(9, -1, "t")
	// Joined mid-message: the tail of a request and of a response.
	tail := frameRequest(req, 1, "app")[10:]
	s.send(l7.FromClient, tail, 0)
	s.send(l7.FromServer, frameResponse(produceResponse(req, 0), 1)[6:], 0)
	for corr := int32(2); corr < 4; corr++ {
		s.send(l7.FromClient, frameRequest(req, corr, "app"), 0)
		s.send(l7.FromServer, frameResponse(produceResponse(req, 0), corr), 0)
		wantKafka(t, one(t, s.take()), v1alpha1.Kafka{APIKey: "produce", APIVersion: 9, CorrelationID: corr, ClientID: "app", Topic: "t"}, false)
	}

	// A request whose segment's sample ends before the request starts
	// (two requests in one segment): its size is lost.
	two := append(frameRequest(req, 4, "app"), frameRequest(req, 5, "app")...)
	s.send(l7.FromClient, two, 40)
	if c := s.c.(*conn); c.sides[l7.FromClient].synced {
		t.Fatal("still in sync after a lost size")
	}
	// Not the next request: an older correlation id, another client id.
	s.send(l7.FromClient, frameRequest(req, 3, "app"), 0)
	s.send(l7.FromClient, frameRequest(req, 9, "other"), 0)
	if c := s.c.(*conn); c.sides[l7.FromClient].synced {
		t.Fatal("resynchronized on a request that does not continue the connection")
	}
	s.send(l7.FromClient, frameRequest(req, 6, "app"), 0)
	if c := s.c.(*conn); !c.sides[l7.FromClient].synced {
		t.Fatal("not resynchronized on the next request")
	}
	// Request 4's header was sampled, 5's was lost with its size; 3 and 9
	// were never taken as requests.
	for _, corr := range []int32{4, 6} {
		s.send(l7.FromServer, frameResponse(produceResponse(req, 0), corr), 0)
	}
	got := s.take()
	if len(got) != 2 {
		t.Fatalf("got %v", got)
	}
	wantKafka(t, got[0], v1alpha1.Kafka{APIKey: "produce", APIVersion: 9, CorrelationID: 4, ClientID: "app", Topic: "t"}, false)
	wantKafka(t, got[1], v1alpha1.Kafka{APIKey: "produce", APIVersion: 9, CorrelationID: 6, ClientID: "app", Topic: "t"}, false)
	if n := p.Stats().Desyncs.Load(); n != 1 {
		t.Fatalf("Desyncs %d", n)
	}
}

// TestResyncServer: a server side that lost a response's size takes up
// again at a response to a pending request, found within a segment.
func TestResyncServer(t *testing.T) {
	s := newStream(New(Options{}), l7.Start{FromHandshake: true})
	req := produceRequest(9, -1, "t")
	for corr := int32(1); corr <= 3; corr++ {
		s.send(l7.FromClient, frameRequest(req, corr, "app"), 0)
	}
	s.skip(l7.FromServer, 3) // part of the first response's size
	resp := func(corr int32) []byte { return frameResponse(produceResponse(req, 0), corr) }
	rest := append(resp(1)[3:], resp(2)...)
	s.send(l7.FromServer, append(rest, resp(3)...), 0)
	got := s.take()
	if len(got) != 2 || got[0].Record.Kafka.CorrelationID != 2 || got[1].Record.Kafka.CorrelationID != 3 || got[0].Partial {
		t.Fatalf("got %v", got)
	}
	ex := one(t, s.c.Expire(s.now.Add(time.Hour), 0))
	wantKafka(t, ex, v1alpha1.Kafka{APIKey: "produce", APIVersion: 9, CorrelationID: 1, ClientID: "app", Topic: "t"}, true)
}

// TestTopicIDs: topic IDs resolve through the Metadata responses any
// connection of the Protocol saw, and stay unresolved, Partial, on
// another Protocol's connections.
func TestTopicIDs(t *testing.T) {
	topics := NewTopics(16)
	p := New(Options{Topics: topics})
	meta := newStream(p, l7.Start{FromHandshake: true})
	mreq := kmsg.NewPtrMetadataRequest()
	mreq.SetVersion(12)
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr("orders")
	mreq.Topics = append(mreq.Topics, mt)
	meta.send(l7.FromClient, frameRequest(mreq, 1, "app"), 0)
	mresp := mreq.ResponseKind().(*kmsg.MetadataResponse)
	st := kmsg.NewMetadataResponseTopic()
	st.Topic, st.TopicID = kmsg.StringPtr("orders"), alphaID
	mresp.Topics = append(mresp.Topics, st)
	meta.send(l7.FromServer, frameResponse(mresp, 1), 0)
	wantKafka(t, one(t, meta.take()), v1alpha1.Kafka{APIKey: "metadata", APIVersion: 12, CorrelationID: 1, ClientID: "app", Topic: "orders"}, false)

	fetch := func(p *Protocol) l7.Exchange {
		s := newStream(p, l7.Start{FromHandshake: true})
		req := kmsg.NewPtrFetchRequest()
		req.SetVersion(17)
		rt := kmsg.NewFetchRequestTopic()
		rt.TopicID = alphaID
		req.Topics = append(req.Topics, rt)
		s.send(l7.FromClient, frameRequest(req, 9, "app"), 0)
		s.send(l7.FromServer, frameResponse(req.ResponseKind(), 9), 0)
		return one(t, s.take())
	}
	wantKafka(t, fetch(p), v1alpha1.Kafka{APIKey: "fetch", APIVersion: 17, CorrelationID: 9, ClientID: "app", Topic: "orders"}, false)
	other := New(Options{})
	wantKafka(t, fetch(other), v1alpha1.Kafka{APIKey: "fetch", APIVersion: 17, CorrelationID: 9, ClientID: "app"}, true)
	if n, m := p.Stats().Unresolved.Load(), other.Stats().Unresolved.Load(); n != 0 || m != 1 {
		t.Fatalf("Unresolved %d and %d", n, m)
	}
	if p.Topics() != topics || topics.Len() != 1 {
		t.Fatalf("topics %v, %d names", p.Topics(), topics.Len())
	}
}

// TestMessageLimit: beyond MaxMessageBytes, a message's sampled bytes are
// not kept, and what they held is unknown.
func TestMessageLimit(t *testing.T) {
	s := newStream(New(Options{MaxMessageBytes: 64}), l7.Start{FromHandshake: true})
	req := kmsg.NewPtrMetadataRequest()
	req.SetVersion(12)
	s.send(l7.FromClient, frameRequest(req, 1, "app"), 0)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	for i := range 10 {
		st := kmsg.NewMetadataResponseTopic()
		st.Topic, st.TopicID = kmsg.StringPtr(fmt.Sprintf("topic-%d", i)), [16]byte{byte(i + 1)}
		resp.Topics = append(resp.Topics, st)
	}
	s.send(l7.FromServer, frameResponse(resp, 1), 0)
	wantKafka(t, one(t, s.take()), v1alpha1.Kafka{APIKey: "metadata", APIVersion: 12, CorrelationID: 1, ClientID: "app"}, true)
	if c := s.c.(*conn); cap(c.sides[l7.FromServer].m.buf) > 64 {
		t.Fatalf("kept %d bytes", cap(c.sides[l7.FromServer].m.buf))
	}
}

// TestOtherKeys: keys decoded with kmsg give their topic and error code
// when sampled whole; the rest give key, version, correlation and client
// id.
func TestOtherKeys(t *testing.T) {
	s := newStream(New(Options{}), l7.Start{FromHandshake: true})
	oc := kmsg.NewPtrOffsetCommitRequest()
	oc.SetVersion(8)
	oc.Group = "g"
	ot := kmsg.NewOffsetCommitRequestTopic()
	ot.Topic = "orders"
	oc.Topics = append(oc.Topics, ot)
	s.send(l7.FromClient, frameRequest(oc, 1, "app"), 0)
	ocr := oc.ResponseKind().(*kmsg.OffsetCommitResponse)
	rt := kmsg.NewOffsetCommitResponseTopic()
	rt.Topic = "payments"
	rp := kmsg.NewOffsetCommitResponseTopicPartition()
	rp.ErrorCode = 25 // UNKNOWN_MEMBER_ID
	rt.Partitions = append(rt.Partitions, rp)
	ocr.Topics = append(ocr.Topics, rt)
	s.send(l7.FromServer, frameResponse(ocr, 1), 0)
	wantKafka(t, one(t, s.take()), v1alpha1.Kafka{APIKey: "offsetcommit", APIVersion: 8, CorrelationID: 1, ClientID: "app", Topic: "payments", ErrorCode: 25}, false)

	hb := kmsg.NewPtrHeartbeatRequest()
	hb.SetVersion(4)
	s.send(l7.FromClient, frameRequest(hb, 2, "app"), 0)
	hbr := hb.ResponseKind().(*kmsg.HeartbeatResponse)
	hbr.ErrorCode = 27 // REBALANCE_IN_PROGRESS
	s.send(l7.FromServer, frameResponse(hbr, 2), 0)
	wantKafka(t, one(t, s.take()), v1alpha1.Kafka{APIKey: "heartbeat", APIVersion: 4, CorrelationID: 2, ClientID: "app", ErrorCode: 27}, false)

	// A heartbeat response cut short: its error code is unknown.
	s.send(l7.FromClient, frameRequest(hb, 3, "app"), 0)
	s.send(l7.FromServer, frameResponse(hbr, 3), 10)
	wantKafka(t, one(t, s.take()), v1alpha1.Kafka{APIKey: "heartbeat", APIVersion: 4, CorrelationID: 3, ClientID: "app"}, true)

	dg := kmsg.NewPtrDescribeGroupsRequest()
	dg.SetVersion(5)
	dg.Groups = []string{"g"}
	s.send(l7.FromClient, frameRequest(dg, 4, "app"), 0)
	s.send(l7.FromServer, frameResponse(dg.ResponseKind(), 4), 0)
	wantKafka(t, one(t, s.take()), v1alpha1.Kafka{APIKey: "describegroups", APIVersion: 5, CorrelationID: 4, ClientID: "app"}, false)
}

func TestDetect(t *testing.T) {
	p := New(Options{})
	req := func(key, v int16, corr int32, client string) []byte {
		r := kmsg.RequestForKey(key)
		r.SetVersion(v)
		return frameRequest(r, corr, client)
	}
	patch := func(b []byte, at int, v ...byte) []byte {
		b = bytes.Clone(b)
		copy(b[at:], v)
		return b
	}
	meta := req(3, 12, 1, "consumer-1")
	for _, tc := range []struct {
		name string
		dir  l7.Dir
		b    []byte
		want bool
	}{
		{"metadata v12", l7.FromClient, meta, true},
		{"apiversions v4", l7.FromClient, req(18, 4, 0, "kgo"), true},
		{"produce v3", l7.FromClient, frameRequest(produceRequest(3, 1, "t"), 5, "rdkafka"), true},
		{"fetch v4, first 12 bytes", l7.FromClient, req(1, 4, 1, "c")[:12], true},
		{"null client id", l7.FromClient, patch(meta, 12, 0xff, 0xff), true},
		// Header v0, no client id (built by hand: kmsg's formatter leaves
		// out this request's size and body).
		{"controlled shutdown v0", l7.FromClient, []byte{0, 0, 0, 12, 0, 7, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2}, true},
		{"server bytes", l7.FromServer, meta, false},
		{"11 bytes", l7.FromClient, meta[:11], false},
		{"size 7", l7.FromClient, patch(meta, 0, 0, 0, 0, 7), false},
		{"size 2 GiB", l7.FromClient, patch(meta, 0, 0x7f, 0, 0, 0), false},
		{"unknown key", l7.FromClient, patch(meta, 4, 0, 200), false},
		{"version past kmsg's", l7.FromClient, patch(meta, 6, 0, 99), false},
		{"negative correlation id", l7.FromClient, patch(meta, 8, 0x80), false},
		{"client id past the size", l7.FromClient, patch(meta, 12, 0x7f, 0), false},
		{"unprintable client id", l7.FromClient, patch(meta, 14, 0), false},
		{"HTTP", l7.FromClient, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false},
		{"TLS", l7.FromClient, []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0, 0, 0}, false},
		{"zeros", l7.FromClient, make([]byte, 64), false},
	} {
		if got := p.Detect(tc.dir, tc.b); got != tc.want {
			t.Errorf("%s: Detect %v, want %v", tc.name, got, tc.want)
		}
	}
	if p.Name() != v1alpha1.L7TypeKafka {
		t.Errorf("Name %q", p.Name())
	}
}

func TestAPIKeyName(t *testing.T) {
	for key, want := range map[int16]string{
		-1: "-1", 0: "produce", 1: "fetch", 2: "offsets", 3: "metadata", 4: "leaderandisr",
		17: "saslhandshake", 18: "apiversions", 22: "initproducerid", 29: "describeacls",
		33: "alterconfigs", 36: "saslauthenticate", 71: "gettelemetrysubscriptions", 1000: "1000",
	} {
		if got := APIKeyName(key); got != want {
			t.Errorf("APIKeyName(%d) = %q, want %q", key, got, want)
		}
	}
}

func TestTopics(t *testing.T) {
	topics := NewTopics(2)
	topics.Add([16]byte{}, "zero")
	topics.Add(alphaID, "not a topic!")
	topics.Add(alphaID, string(bytes.Repeat([]byte("t"), 250)))
	if topics.Len() != 0 {
		t.Fatalf("%d names from bad entries", topics.Len())
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 100 {
				id := [16]byte{byte(i), byte(j)}
				topics.Add(id, fmt.Sprintf("t-%d", j))
				topics.Name(id)
			}
		})
	}
	wg.Wait()
	if topics.Len() > 2 {
		t.Fatalf("%d names, at most 2", topics.Len())
	}
	topics.Add(betaID, "beta")
	if name, ok := topics.Name(betaID); !ok || name != "beta" {
		t.Fatalf("Name = %q, %v", name, ok)
	}
}

// TestHostileChunks: chunks the stream layer should never send (overlaps,
// a length shorter than the data, an unknown direction) and malformed
// messages in sync neither panic nor invent records.
func TestHostileChunks(t *testing.T) {
	p := New(Options{})
	c := p.New(l7.Start{FromHandshake: true})
	msg := frameRequest(produceRequest(9, -1, "t"), 1, "app")
	for _, ch := range []l7.Chunk{
		{Dir: 7, Len: len(msg), Data: msg},
		{Dir: l7.FromClient, Len: -5, Data: msg},
		{Dir: l7.FromClient, Off: 0, Len: 10, Data: msg}, // Len < len(Data)
		{Dir: l7.FromClient, Off: 3, Len: 2, Data: msg[3:5]},
		{Dir: l7.FromClient, Off: 0, Len: len(msg), Data: msg}, // overlaps all before
	} {
		if got := c.Feed(ch); len(got) != 0 {
			t.Fatalf("%+v: %v", ch, got)
		}
	}
	// Malformed bodies in sync: arrays longer than the message, negative
	// lengths, an endless varint.
	for i, body := range [][]byte{
		{0, 0, 0, 9, 0, 0, 0, 1, 0, 1, 'x', 0x7f, 0xff, 0xff, 0xff},
		{0, 0, 0, 9, 0, 0, 0, 2, 0xff, 0xfe},
		{0, 1, 0, 12, 0, 0, 0, 3, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		{0, 3, 0, 12, 0, 0, 0, 4, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80},
	} {
		s := newStream(p, l7.Start{FromHandshake: true})
		s.send(l7.FromClient, binary.BigEndian.AppendUint32(nil, uint32(len(body))), 0)
		s.send(l7.FromClient, body, 0)
		got := append(s.take(), s.c.Expire(s.now.Add(time.Hour), 0)...)
		if len(got) != 1 || !got[0].Partial {
			t.Fatalf("body %d: %v", i, got)
		}
	}
	if n := p.Stats().Malformed.Load(); n == 0 {
		t.Fatal("no malformed message counted")
	}
}

// TestLostLastSegment: when the datapath lost a request's last segment,
// its response, not the next chunk, ends the wait: the request is paired
// with what was sampled of it, and the next request is read.
func TestLostLastSegment(t *testing.T) {
	p := New(Options{})
	s := newStream(p, l7.Start{FromHandshake: true})
	req := produceRequest(9, -1, "big")
	req.Topics[0].Partitions[0].Records = bytes.Repeat([]byte("r"), 3000)
	wire := frameRequest(req, 1, "app")
	s.send(l7.FromClient, wire[:2*segment], 512)
	s.skip(l7.FromClient, len(wire)-2*segment)
	s.send(l7.FromServer, frameResponse(produceResponse(req, 0), 1), 0)
	wantKafka(t, one(t, s.take()), v1alpha1.Kafka{APIKey: "produce", APIVersion: 9, CorrelationID: 1, ClientID: "app", Topic: "big"}, false)

	s.send(l7.FromClient, frameRequest(produceRequest(9, -1, "next"), 2, "app"), 0)
	s.send(l7.FromServer, frameResponse(produceResponse(req, 0), 2), 0)
	wantKafka(t, one(t, s.take()), v1alpha1.Kafka{APIKey: "produce", APIVersion: 9, CorrelationID: 2, ClientID: "app", Topic: "next"}, false)
	if st := p.Stats(); st.Orphans.Load()+st.Desyncs.Load() != 0 {
		t.Fatalf("orphans %d, desyncs %d", st.Orphans.Load(), st.Desyncs.Load())
	}
}
