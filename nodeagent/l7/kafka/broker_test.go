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
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"flowscope.io/flowscope/nodeagent/l7"
)

// The datapath's segments: a 1500-byte MTU less IP, TCP and timestamps.
const segment = 1448

// tap records the bytes of every connection between kgo clients and a
// kfake cluster, each write with its time, from both ends: the client's
// dialer and the cluster's listener. A write is where TCP starts a
// segment on an idle connection (Go disables Nagle), which is what the
// datapath samples from.
type tap struct {
	mu    sync.Mutex
	conns map[string]*tapConn // by the client's address
	order []string
}

type tapConn struct {
	mu     sync.Mutex
	writes [2][]tapWrite
	reads  []tapRead // the client's reads, for its round-trip times
}

type tapWrite struct {
	t time.Time
	b []byte
}

type tapRead struct {
	t     time.Time
	total int // bytes read so far
}

func (tp *tap) conn(addr string) *tapConn {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if tp.conns == nil {
		tp.conns = make(map[string]*tapConn)
	}
	c, ok := tp.conns[addr]
	if !ok {
		c = &tapConn{}
		tp.conns[addr] = c
		tp.order = append(tp.order, addr)
	}
	return c
}

func (c *tapConn) write(dir l7.Dir, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes[dir] = append(c.writes[dir], tapWrite{t: time.Now(), b: slices.Clone(b)})
}

// tapped records one end of a connection: its writes in direction dir,
// and, at the client, its reads.
type tapped struct {
	net.Conn
	c      *tapConn
	dir    l7.Dir
	client bool
	total  int
}

func (t *tapped) Write(b []byte) (int, error) {
	t.c.write(t.dir, b)
	return t.Conn.Write(b)
}

func (t *tapped) Read(b []byte) (int, error) {
	n, err := t.Conn.Read(b)
	if n > 0 && t.client {
		t.total += n
		t.c.mu.Lock()
		t.c.reads = append(t.c.reads, tapRead{t: time.Now(), total: t.total})
		t.c.mu.Unlock()
	}
	return n, err
}

type tapListener struct {
	net.Listener
	tp *tap
}

func (l tapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tapped{Conn: c, c: l.tp.conn(c.RemoteAddr().String()), dir: l7.FromServer}, nil
}

func (tp *tap) dial(ctx context.Context, network, host string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, host)
	if err != nil {
		return nil, err
	}
	return &tapped{Conn: c, c: tp.conn(c.LocalAddr().String()), dir: l7.FromClient, client: true}, nil
}

// stream is one direction's recorded bytes.
func (c *tapConn) stream(dir l7.Dir) []byte {
	var b []byte
	for _, w := range c.writes[dir] {
		b = append(b, w.b...)
	}
	return b
}

// writeTime is when the write holding stream offset off began.
func (c *tapConn) writeTime(dir l7.Dir, off int) time.Time {
	for _, w := range c.writes[dir] {
		if off < len(w.b) {
			return w.t
		}
		off -= len(w.b)
	}
	return time.Time{}
}

// readTime is when the client had read the server's stream up to end.
func (c *tapConn) readTime(end int) time.Time {
	for _, r := range c.reads {
		if r.total >= end {
			return r.t
		}
	}
	return time.Time{}
}

// fed is a chunk of one recorded connection.
type fed struct {
	conn string
	l7.Chunk
}

// chunks cuts every write into segments and samples their first budget
// bytes (0: all), in time order across connections. Writes before from
// are left out, as if the agent attached then.
func (tp *tap) chunks(budget int, from time.Time) []fed {
	var out []fed
	for _, addr := range tp.order {
		c := tp.conns[addr]
		for dir := range c.writes {
			var off, skipped uint64
			for _, w := range c.writes[dir] {
				if w.t.Before(from) {
					skipped += uint64(len(w.b))
					off += uint64(len(w.b))
					continue
				}
				for _, ch := range split(l7.Dir(dir), w.t, off-skipped, w.b, segment, budget) {
					out = append(out, fed{conn: addr, Chunk: ch})
				}
				off += uint64(len(w.b))
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

// recorded is one exchange the parser made, with its connection.
type recorded struct {
	conn string
	l7.Exchange
}

// run feeds the chunks to one Protocol, each connection to its own Conn,
// and gives up what is still pending at the end.
func run(p *Protocol, in []fed, start l7.Start) []recorded {
	conns := map[string]l7.Conn{}
	var order []string
	var out []recorded
	for _, f := range in {
		c, ok := conns[f.conn]
		if !ok {
			c = p.New(start)
			conns[f.conn] = c
			order = append(order, f.conn)
		}
		for _, ex := range c.Feed(f.Chunk) {
			out = append(out, recorded{f.conn, ex})
		}
	}
	for _, addr := range order {
		for _, ex := range conns[addr].Expire(time.Now().Add(time.Hour), 0) {
			out = append(out, recorded{addr, ex})
		}
	}
	return out
}

// scenario is what the clients do against the cluster.
type scenario struct {
	// The versions the cluster and the clients know; nil: the newest.
	broker, client *kversion.Versions

	tap      tap
	produced map[string]int // records acknowledged, by topic
	consumed int
	tooLarge bool // the injected produce error reached the client
	unknown  bool // producing to a missing topic failed
	attachAt time.Time
	lastMeta time.Time
}

const (
	producerID = "flowscope-producer"
	noAckID    = "flowscope-noack"
	consumerID = "flowscope-consumer"
)

func (s *scenario) run(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.SeedTopics(3, "orders", "payments"),
		kfake.ListenFn(func(network, addr string) (net.Listener, error) {
			l, err := net.Listen(network, addr)
			if err != nil {
				return nil, err
			}
			return tapListener{l, &s.tap}, nil
		}),
	}
	if s.broker != nil {
		opts = append(opts, kfake.MaxVersions(s.broker))
	}
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()

	// The next produce request fails whole with MESSAGE_TOO_LARGE, a
	// code kgo does not retry.
	var failNext atomic.Bool
	cluster.ControlKey(kmsg.Produce.Int16(), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if !failNext.CompareAndSwap(true, false) {
			return nil, nil, false
		}
		req := kreq.(*kmsg.ProduceRequest)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.MessageTooLarge.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})

	common := []kgo.Opt{
		kgo.SeedBrokers(cluster.ListenAddrs()...),
		kgo.Dialer(s.tap.dial),
		kgo.RetryBackoffFn(func(int) time.Duration { return 10 * time.Millisecond }),
	}
	if s.client != nil {
		common = append(common, kgo.MaxVersions(s.client))
	}
	client := func(opts ...kgo.Opt) *kgo.Client {
		cl, err := kgo.NewClient(append(slices.Clone(common), opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}

	s.produced = map[string]int{}
	prod := client(kgo.ClientID(producerID))
	defer prod.Close()
	value := strings.Repeat("flowscope ", 30) // 300 bytes: batches span segments
	for i := range 40 {
		topic := "orders"
		if i%4 == 3 {
			topic = "payments"
		}
		r := &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i), Value: []byte(value)}
		if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
		s.produced[topic]++
	}
	// A batch of 30 records at once: one request over many segments.
	batch := make([]*kgo.Record, 30)
	for i := range batch {
		batch[i] = &kgo.Record{Topic: "orders", Key: fmt.Appendf(nil, "b%d", i), Value: []byte(value)}
	}
	if err := prod.ProduceSync(ctx, batch...).FirstErr(); err != nil {
		t.Fatalf("produce batch: %v", err)
	}
	s.produced["orders"] += len(batch)

	failNext.Store(true)
	err = prod.ProduceSync(ctx, &kgo.Record{Topic: "payments", Value: []byte("too large")}).FirstErr()
	s.tooLarge = errors.Is(err, kerr.MessageTooLarge)
	if !s.tooLarge {
		t.Fatalf("injected produce error: got %v", err)
	}

	// A client of its own, as kgo goes on asking for a missing topic's
	// metadata (here, after the late attach).
	lost := client(kgo.ClientID(producerID), kgo.UnknownTopicRetries(1))
	err = lost.ProduceSync(ctx, &kgo.Record{Topic: "missing", Value: []byte("nowhere")}).FirstErr()
	lost.Close()
	s.unknown = errors.Is(err, kerr.UnknownTopicOrPartition)
	if !s.unknown {
		t.Fatalf("produce to a missing topic: got %v", err)
	}

	noAck := client(kgo.ClientID(noAckID), kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite())
	for i := range 5 {
		if err := noAck.ProduceSync(ctx, &kgo.Record{Topic: "orders", Value: fmt.Appendf(nil, "fire and forget %d", i)}).FirstErr(); err != nil {
			t.Fatalf("produce without acks: %v", err)
		}
	}
	noAck.Close()
	s.produced["orders"] += 5

	want := s.produced["orders"]
	cons := client(kgo.ClientID(consumerID), kgo.ConsumeTopics("orders"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	defer cons.Close()
	for s.consumed < want {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", s.consumed, want, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		s.consumed += fs.NumRecords()
	}
	// The late-attach test starts here, after the last Metadata
	// exchange: records produced and fetched from now on name their
	// topics by ID (Produce v13, Fetch v13+) that no Metadata response
	// after the attach resolves.
	time.Sleep(200 * time.Millisecond)
	s.attachAt = time.Now()
	for i := range 5 {
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: "orders", Value: fmt.Appendf(nil, "late %d", i)}).FirstErr(); err != nil {
			t.Fatalf("produce after attach: %v", err)
		}
	}
	s.produced["orders"] += 5
	for want += 5; s.consumed < want; {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", s.consumed, want, err)
		}
		s.consumed += fs.NumRecords()
	}
	cons.Close()
	prod.Close()
}

// truths decodes every recorded connection with kmsg.
func (s *scenario) truths(t *testing.T) (map[string]map[int32]*truth, map[[16]byte]string) {
	names := map[[16]byte]string{}
	all := map[string]map[int32]*truth{}
	for _, addr := range s.tap.order {
		c := s.tap.conns[addr]
		byCorr := map[int32]*truth{}
		for _, m := range messages(t, c.stream(l7.FromClient)) {
			tr, _ := decodeRequest(t, m.body)
			tr.reqOff = m.off
			if _, dup := byCorr[tr.corr]; dup {
				t.Fatalf("%s: correlation id %d twice", addr, tr.corr)
			}
			byCorr[tr.corr] = &tr
		}
		for _, m := range messages(t, c.stream(l7.FromServer)) {
			corr := int32(uint32(m.body[0])<<24 | uint32(m.body[1])<<16 | uint32(m.body[2])<<8 | uint32(m.body[3]))
			tr, ok := byCorr[corr]
			if !ok {
				t.Fatalf("%s: response %d to no request", addr, corr)
			}
			decodeResponse(t, tr, m.body[4:])
			tr.respEnd = m.end
			if tr.resp != nil {
				learnNames(tr.resp, names)
			}
			if tr.key == 3 {
				if wt := c.writeTime(l7.FromServer, m.off); wt.After(s.lastMeta) {
					s.lastMeta = wt
				}
			}
		}
		all[addr] = byCorr
	}
	return all, names
}

func TestBroker(t *testing.T) {
	for _, tc := range []struct {
		name           string
		broker, client *kversion.Versions
	}{
		{"newest", nil, nil},
		{"kafka-2.8", kversion.V2_8_0(), kversion.V2_8_0()},
		{"kafka-0.11", kversion.V0_11_0(), kversion.V0_11_0()},
		// The client asks ApiVersions v5, the broker knows v2: it answers
		// UNSUPPORTED_VERSION with a v0 body, in header v0 as always.
		{"broker-2.3-client-newest", kversion.V2_3_0(), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &scenario{broker: tc.broker, client: tc.client}
			s.run(t)
			truths, names := s.truths(t)
			versions := map[int16]map[int16]bool{}
			for _, byCorr := range truths {
				for _, tr := range byCorr {
					if versions[tr.key] == nil {
						versions[tr.key] = map[int16]bool{}
					}
					versions[tr.key][tr.ver] = true
				}
			}
			t.Logf("versions the client used: %v", versions)
			for _, budget := range []int{0, 1024, 512} {
				t.Run(fmt.Sprintf("budget=%d", budget), func(t *testing.T) {
					p := New(Options{})
					got := run(p, s.tap.chunks(budget, time.Time{}), l7.Start{FromHandshake: true})
					checkRecords(t, s, truths, names, got, budget == 0)
					// Every message starts a write, so its size is sampled.
					st := p.Stats()
					if st.Desyncs.Load()+st.Orphans.Load()+st.Malformed.Load()+st.DroppedRequests.Load() != 0 {
						t.Errorf("desyncs %d, orphans %d, malformed %d, dropped %d", st.Desyncs.Load(),
							st.Orphans.Load(), st.Malformed.Load(), st.DroppedRequests.Load())
					}
					if tc.client == nil && tc.broker != nil {
						checkDowngrade(t, got)
					}
				})
			}
			t.Run("attach-after-metadata", func(t *testing.T) {
				if !s.attachAt.After(s.lastMeta) {
					t.Fatalf("the last Metadata exchange (%v) follows the attach time (%v)", s.lastMeta, s.attachAt)
				}
				p := New(Options{})
				got := run(p, s.tap.chunks(0, s.attachAt), l7.Start{})
				checkLate(t, truths, names, got)
			})
		})
	}
}

// checkRecords holds the parser's records to kmsg's decoding of the same
// bytes: exactly when every byte was sampled, and where not Partial when
// sampling cut the segments.
func checkRecords(t *testing.T, s *scenario, truths map[string]map[int32]*truth, names map[[16]byte]string, got []recorded, whole bool) {
	t.Helper()
	seen := map[string]map[int32]bool{}
	counts, wantCounts := map[string]int{}, map[string]int{}
	partial := map[string]int{}
	topics := map[string]map[string]bool{} // by key, the topics records name
	var errs []string
	for _, g := range got {
		k := g.Record.Kafka
		if k == nil {
			t.Fatalf("a record without Kafka: %+v", g.Exchange)
		}
		if g.Record.Partial != g.Partial {
			t.Errorf("%s: Record.Partial %v, Exchange.Partial %v", describe(g.Exchange), g.Record.Partial, g.Partial)
		}
		tr, ok := truths[g.conn][k.CorrelationID]
		if !ok || k.APIKey == "" {
			t.Errorf("%s: a record of no request the client sent", describe(g.Exchange))
			continue
		}
		if seen[g.conn] == nil {
			seen[g.conn] = map[int32]bool{}
		}
		if seen[g.conn][k.CorrelationID] {
			t.Errorf("%s: twice", describe(g.Exchange))
		}
		seen[g.conn][k.CorrelationID] = true
		counts[k.APIKey]++
		if g.Partial {
			partial[k.APIKey]++
			t.Logf("partial: %s", describe(g.Exchange))
		}
		if topics[k.APIKey] == nil {
			topics[k.APIKey] = map[string]bool{}
		}
		topics[k.APIKey][k.Topic] = true

		c := s.tap.conns[g.conn]
		if k.APIKey != APIKeyName(tr.key) || k.APIVersion != int32(tr.ver) || k.ClientID != tr.clientID && !g.Partial {
			t.Errorf("%s: want %s v%d client %q", describe(g.Exchange), APIKeyName(tr.key), tr.ver, tr.clientID)
		}
		if wt := c.writeTime(l7.FromClient, tr.reqOff); !g.Request.Equal(wt) {
			t.Errorf("%s: request time %v, written at %v", describe(g.Exchange), g.Request, wt)
		}
		answered := tr.respEnd > 0
		if answered == g.Response.IsZero() {
			t.Errorf("%s: answered %v, want %v", describe(g.Exchange), !g.Response.IsZero(), answered)
		}
		if answered {
			rtt := c.readTime(tr.respEnd).Sub(c.writeTime(l7.FromClient, tr.reqOff))
			if lat := g.Response.Sub(g.Request); lat < 0 || lat > rtt {
				t.Errorf("%s: latency %v, the client's round trip %v", describe(g.Exchange), lat, rtt)
			}
		}
		wantErr, wantTopic := expected(tr, names)
		if k.Topic != wantTopic && !(g.Partial && k.Topic == "") {
			t.Errorf("%s: topic %q, want %q", describe(g.Exchange), k.Topic, wantTopic)
		}
		if k.ErrorCode != int32(wantErr) && !(g.Partial && k.ErrorCode == 0) {
			t.Errorf("%s: error code %d, want %d", describe(g.Exchange), k.ErrorCode, wantErr)
		}
		if k.ErrorCode != 0 {
			errs = append(errs, fmt.Sprintf("%s %s %d", k.APIKey, k.Topic, k.ErrorCode))
		}
		// Every byte sampled, nothing is Partial, save requests the
		// clients closed on (fetches in flight).
		if whole && g.Partial {
			t.Errorf("%s: Partial with every byte sampled", describe(g.Exchange))
		}
	}
	for addr, byCorr := range truths {
		for corr, tr := range byCorr {
			wantCounts[APIKeyName(tr.key)]++
			if !seen[addr][corr] {
				t.Errorf("%s: no record of %s v%d corr %d", addr, APIKeyName(tr.key), tr.ver, corr)
			}
		}
	}
	if !maps.Equal(counts, wantCounts) {
		t.Errorf("records by key %v, the client sent %v", counts, wantCounts)
	}
	t.Logf("records by key %v, partial %v", counts, partial)
	for _, key := range []string{"produce", "fetch", "metadata", "apiversions"} {
		if counts[key] == 0 {
			t.Errorf("no %s record", key)
		}
	}
	// What the client did.
	if whole {
		for _, want := range []string{"orders", "payments"} {
			if !topics["produce"][want] {
				t.Errorf("no produce record names %q: %v", want, topics["produce"])
			}
		}
		if !topics["fetch"]["orders"] {
			t.Errorf("no fetch record names orders: %v", topics["fetch"])
		}
		if !topics["metadata"]["missing"] {
			t.Errorf("no metadata record names the missing topic: %v", topics["metadata"])
		}
		for _, want := range []string{
			fmt.Sprintf("produce payments %d", kerr.MessageTooLarge.Code),
			fmt.Sprintf("metadata missing %d", kerr.UnknownTopicOrPartition.Code),
		} {
			if !slices.Contains(errs, want) {
				t.Errorf("no record %q among the errors %v", want, errs)
			}
		}
	}
}

// checkLate: attached after the last Metadata exchange, the parser
// resynchronizes on every connection, names the topics requests name, and
// leaves topic IDs, which no Metadata response resolved since, empty and
// Partial.
func checkLate(t *testing.T, truths map[string]map[int32]*truth, names map[[16]byte]string, got []recorded) {
	t.Helper()
	counts, unresolved := map[string]int{}, 0
	for _, g := range got {
		k := g.Record.Kafka
		tr, ok := truths[g.conn][k.CorrelationID]
		if !ok || k.APIKey != APIKeyName(tr.key) {
			t.Errorf("%s: a record of no request the client sent", describe(g.Exchange))
			continue
		}
		counts[k.APIKey]++
		if k.APIKey != "fetch" && k.APIKey != "produce" {
			continue
		}
		_, want := expected(tr, names)
		byID := tr.ver >= 13
		switch {
		case g.Partial && k.Topic == "":
			if want != "" && byID {
				unresolved++
			}
		case k.Topic != want:
			t.Errorf("%s: topic %q, want %q", describe(g.Exchange), k.Topic, want)
		case k.Topic != "" && byID:
			t.Errorf("%s: a topic ID resolved without a Metadata response", describe(g.Exchange))
		}
	}
	t.Logf("late attach: records by key %v, %d topic IDs unresolved", counts, unresolved)
	if counts["fetch"] == 0 || counts["produce"] == 0 {
		t.Fatal("no fetch or produce record after a late attach")
	}
	if counts["metadata"] != 0 {
		t.Errorf("%d metadata records after the last Metadata exchange", counts["metadata"])
	}
	if unresolved == 0 && (truthsUse(truths, 1, 13) || truthsUse(truths, 0, 13)) {
		t.Error("requests name topics by ID, and yet no record left one unresolved")
	}
}

// truthsUse reports whether the client sent requests of key at version v
// or later.
func truthsUse(truths map[string]map[int32]*truth, key, v int16) bool {
	for _, byCorr := range truths {
		for _, tr := range byCorr {
			if tr.key == key && tr.ver >= v {
				return true
			}
		}
	}
	return false
}

// checkDowngrade: a connection's first ApiVersions failed with
// UNSUPPORTED_VERSION at a flexible version, and the retry at the
// broker's version succeeded (kgo asks later connections at that version
// straight away).
func checkDowngrade(t *testing.T, got []recorded) {
	t.Helper()
	failed := map[string]bool{}
	downgraded := 0
	for _, g := range got {
		k := g.Record.Kafka
		if k.APIKey != "apiversions" || g.Partial {
			continue
		}
		switch {
		case k.ErrorCode == int32(kerr.UnsupportedVersion.Code) && k.APIVersion >= 3:
			failed[g.conn] = true
		case k.ErrorCode == 0 && k.APIVersion <= 2 && failed[g.conn]:
			downgraded++
		case k.ErrorCode != 0:
			t.Errorf("%s: an unexpected error", describe(g.Exchange))
		}
	}
	if len(failed) == 0 || downgraded != len(failed) {
		t.Errorf("%d connections failed ApiVersions at a flexible version, %d retried it", len(failed), downgraded)
	}
}
