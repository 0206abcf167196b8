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

// Package kafka parses the Kafka protocol from the sampled bytes of a
// connection (see package l7): one record per request, with its response.
//
// Framing follows the 4-byte size of every message, so message bodies are
// skipped by length whether they were sampled or not, and fields are read
// wherever their bytes were sampled (a Fetch response's later partitions,
// past the records of the first). When a message's size itself was not
// sampled, the direction resynchronizes at the next plausible message
// start: a request that continues the connection's correlation ids and
// client id, a response to a pending request. A response is paired with
// its request by correlation id and decoded with the request's API key and
// version, which it does not carry. Header versions follow kmsg's flexible
// versions (KIP-482), except that an ApiVersions response header is always
// v0, whatever the version.
//
// What a record holds:
//
//   - APIKey: the names Hubble shows, Cilium's (the lowercased Kafka
//     name; "offsets" for ListOffsets); keys after alterconfigs (33),
//     which Cilium shows as numbers, get their lowercased Kafka name too.
//   - ErrorCode: the response's first non-zero error code in wire order,
//     top-level, per topic or per partition, and 0 when all are 0; a
//     top-level code that follows the topics (Metadata v13, OffsetFetch v2
//     to v7) wins when non-zero. Decoded for Produce, Fetch, Metadata,
//     ApiVersions and, when their whole body was sampled, ListOffsets,
//     OffsetCommit, OffsetFetch, FindCoordinator, JoinGroup, Heartbeat,
//     LeaveGroup, SyncGroup, SaslHandshake, InitProducerId and
//     SaslAuthenticate. Other keys give key, version, correlation id and
//     client id only.
//   - Topic: the topic the error code is about, when it is a topic's or a
//     partition's; else the first topic the request names, in wire order
//     (a record is one exchange: Cilium logs one line per topic instead);
//     a Fetch that names none (an incremental fetch session) takes the
//     first topic of its response. Topic IDs (Produce v13, Fetch v13+,
//     Metadata v10+) are resolved through Topics, which Metadata responses
//     teach; an ID no Metadata response named leaves Topic empty, Partial.
//
// A record is Partial when something it would report was not seen or not
// decoded: a sample that ended before the field, a request or a response
// lost to a gap, an unresolved topic ID. Never guessed.
package kafka

import (
	"encoding/binary"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kmsg"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/l7"
)

const (
	// DefaultMaxPending is how many requests a connection waits on.
	DefaultMaxPending = 1024
	// DefaultMaxMessageBytes is how many sampled bytes of one message a
	// connection keeps: enough for a Metadata response naming a few hundred
	// topics when it was sampled whole.
	DefaultMaxMessageBytes = 64 << 10

	// maxSize bounds a message's size prefix. Brokers refuse requests over
	// socket.request.max.bytes (100 MiB by default); responses (Fetch) may
	// be larger, but never near 1 GiB.
	maxSize = 1 << 30
	// maxRequestSize bounds a request's size when detecting or
	// resynchronizing.
	maxRequestSize = 100 << 20
)

// Options configure a Protocol.
type Options struct {
	// Topics resolves topic IDs. Share one among all Protocols of an agent;
	// nil: the Protocol makes its own, shared by its connections.
	Topics *Topics
	// MaxPending bounds the requests a connection waits on; beyond it, the
	// oldest is given up as an exchange without response. 0: DefaultMaxPending.
	MaxPending int
	// MaxMessageBytes bounds the sampled bytes kept of one message.
	// 0: DefaultMaxMessageBytes.
	MaxMessageBytes int
}

// Stats counts what a Protocol's connections lost or could not read. Its
// counters are safe for concurrent use.
type Stats struct {
	// DroppedRequests counts requests given up, without a response,
	// because their connection already waited on MaxPending.
	DroppedRequests atomic.Uint64
	// Desyncs counts the times a direction lost its framing because a
	// message's size was not sampled (or made no sense); it resumes at the
	// next plausible message start.
	Desyncs atomic.Uint64
	// Orphans counts responses whose request was not seen.
	Orphans atomic.Uint64
	// Unresolved counts records whose topic ID no Metadata response named.
	Unresolved atomic.Uint64
	// Malformed counts messages whose sampled bytes do not decode as their
	// API key and version say.
	Malformed atomic.Uint64
}

// Protocol is the Kafka parser. Make it with New; it is safe for
// concurrent use, its connections are not.
type Protocol struct {
	topics     *Topics
	maxPending int
	maxMessage int
	stats      Stats
}

var _ l7.Protocol = (*Protocol)(nil)

// New returns a Kafka parser.
func New(o Options) *Protocol {
	p := &Protocol{topics: o.Topics, maxPending: o.MaxPending, maxMessage: o.MaxMessageBytes}
	if p.topics == nil {
		p.topics = NewTopics(DefaultMaxTopics)
	}
	if p.maxPending <= 0 {
		p.maxPending = DefaultMaxPending
	}
	if p.maxMessage <= 0 {
		p.maxMessage = DefaultMaxMessageBytes
	}
	return p
}

// Name is v1alpha1.L7TypeKafka.
func (p *Protocol) Name() v1alpha1.L7Type { return v1alpha1.L7TypeKafka }

// Stats returns the counters of every connection the Protocol made.
func (p *Protocol) Stats() *Stats { return &p.stats }

// Topics returns the topic ID cache the Protocol resolves with.
func (p *Protocol) Topics() *Topics { return p.topics }

// Detect reports whether a connection's first client bytes are a
// plausible Kafka request: a sane size, a known API key at a version kmsg
// knows, a non-negative correlation id and a printable client id. Kafka
// servers never speak first, and a response header (size, correlation id)
// is too weak to recognize, so server bytes are never detected.
func (p *Protocol) Detect(dir l7.Dir, first []byte) bool {
	return dir == l7.FromClient && plausibleRequest(first)
}

// New returns the parser of one connection. A connection whose handshake
// was not seen starts without framing, and finds it at the first chunk
// that starts with a plausible request, and at a response to it.
func (p *Protocol) New(s l7.Start) l7.Conn {
	c := &conn{p: p}
	c.sides[l7.FromClient].synced = s.FromHandshake
	c.sides[l7.FromServer].synced = s.FromHandshake
	return c
}

// apiKeyInfo is what kmsg knows of an API key.
type apiKeyInfo struct {
	known bool
	max   int16 // highest version kmsg decodes
	flex  int16 // first flexible version (KIP-482), or -1
	name  string
}

var apiKeys = func() (t [kmsg.MaxKey + 1]apiKeyInfo) {
	for k := range t {
		req := kmsg.RequestForKey(int16(k))
		if req == nil {
			t[k].name = strconv.Itoa(k)
			continue
		}
		t[k] = apiKeyInfo{known: true, max: req.MaxVersion(), flex: -1,
			name: strings.ToLower(kmsg.NameForKey(int16(k)))}
		for v := int16(0); v <= t[k].max; v++ {
			req.SetVersion(v)
			if req.IsFlexible() {
				t[k].flex = v
				break
			}
		}
	}
	// Cilium's name for ListOffsets, the only one of its names (keys 0 to
	// 33) that is not the lowercased Kafka name.
	t[2].name = "offsets"
	return t
}()

func keyInfo(key int16) apiKeyInfo {
	if key < 0 || int(key) >= len(apiKeys) {
		return apiKeyInfo{}
	}
	return apiKeys[key]
}

// APIKeyName is the name a record gives an API key: Cilium's (what
// Hubble shows) for keys 0 to 33, the lowercased Kafka name for later
// keys, the number for keys kmsg does not know.
func APIKeyName(key int16) string {
	if key >= 0 && int(key) < len(apiKeys) {
		return apiKeys[key].name
	}
	return strconv.Itoa(int(key))
}

// knownVersion reports whether kmsg knows the layout of key at version v.
func knownVersion(key, v int16) bool {
	i := keyInfo(key)
	return i.known && v >= 0 && v <= i.max
}

// flexibleRequest reports whether a request uses header v2 and compact
// encodings.
func flexibleRequest(key, v int16) bool {
	i := keyInfo(key)
	return i.known && i.flex >= 0 && v >= i.flex
}

// flexibleResponseHeader reports whether a response header carries tagged
// fields (header v1): flexible versions, except ApiVersions, whose
// response header is always v0 so that a client can read it whatever
// version the broker answers with.
func flexibleResponseHeader(key, v int16) bool {
	return key != 18 && flexibleRequest(key, v)
}

// headerHasClientID: ControlledShutdown v0 alone uses request header v0.
func headerHasClientID(key, v int16) bool { return key != 7 || v != 0 }

// plausibleRequest checks the leading bytes of a request: size, API key,
// version, correlation id and, as far as sampled, the client id.
func plausibleRequest(b []byte) bool {
	if len(b) < 12 {
		return false
	}
	size := int32(binary.BigEndian.Uint32(b))
	key := int16(binary.BigEndian.Uint16(b[4:]))
	v := int16(binary.BigEndian.Uint16(b[6:]))
	corr := int32(binary.BigEndian.Uint32(b[8:]))
	if size < 8 || size > maxRequestSize || !knownVersion(key, v) || corr < 0 {
		return false
	}
	if !headerHasClientID(key, v) {
		return true
	}
	if size < 10 || len(b) < 14 {
		return size >= 10
	}
	n := int16(binary.BigEndian.Uint16(b[12:]))
	if n == -1 {
		return true
	}
	if n < 0 || int32(n) > size-10 {
		return false
	}
	id := b[14:]
	if len(id) > int(n) {
		id = id[:n]
	}
	return printable(id)
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// validTopic reports whether b is a legal Kafka topic name: 1 to 249 of
// [a-zA-Z0-9._-].
func validTopic[T string | []byte](b T) bool {
	if len(b) == 0 || len(b) > 249 {
		return false
	}
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
