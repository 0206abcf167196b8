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

// Package l7 is the contract between the agent's L7 stream layer and its
// protocol parsers (packages dns, http1, http2, kafka below it).
//
// The datapath samples the first bytes of TCP segments and UDP datagrams
// of selected connections. The stream layer orders a connection's
// samples by TCP sequence number, drops retransmits, and hands each
// direction's bytes to the connection's parser as Chunks that carry
// their stream offsets, so a parser always knows exactly how many bytes
// it did not see (the rest of a segment beyond the sampled budget, or a
// lost sample). Parsers skip message bodies they know the length of, and
// mark an exchange Partial when a gap hides part of what they report.
// They never guess.
package l7

import (
	"bytes"
	"strings"
	"time"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// Dir is the direction of bytes within a connection.
type Dir uint8

const (
	// FromClient is the connection initiator's bytes: requests.
	FromClient Dir = iota
	// FromServer is the responder's bytes: responses.
	FromServer
)

func (d Dir) String() string {
	if d == FromClient {
		return "client"
	}
	return "server"
}

// Chunk is bytes of one direction of a connection.
//
// For a stream (TCP), Off is the offset of Data[0] within the direction's
// byte stream (0 is the first byte the stream layer saw, which is the
// first byte of the connection when it saw the handshake: see Conn's
// Start), and Len is how many stream bytes the chunk covers: Data is the
// first len(Data) of them, the other Len-len(Data) were not sampled. The
// stream layer delivers chunks of one direction in offset order without
// overlap; Off may jump past bytes that were never sampled at all.
//
// For datagrams (UDP), each Chunk is one datagram: Off is 0, and Len is
// the datagram's length.
//
// Data is valid only during the Feed (or Detect) it is passed to: it may
// be the datapath reader's buffer, reused for the next sample. A parser
// copies what it keeps.
type Chunk struct {
	Dir  Dir
	Time time.Time
	Off  uint64
	Len  int
	Data []byte
}

// Missing reports how many bytes of the chunk were not sampled.
func (c Chunk) Missing() int { return c.Len - len(c.Data) }

// Exchange is one request with its response, or a request that got none
// (Response is zero: a timeout), or a response whose request was not seen.
type Exchange struct {
	// Request and Response are the times of the first byte of each.
	Request, Response time.Time
	// Record is what the parser made of it. Its Latency is left to the
	// caller (Response - Request, when both are known).
	Record v1alpha1.Layer7
	// Partial: part of the exchange was not seen or could not be decoded
	// (a gap, a late join, a truncated sample); what Record holds is
	// exact, what it lacks is unknown, never guessed.
	Partial bool
	// Truncated: the response says it left part of its answer out, and
	// the client is expected to ask again over TCP (DNS's TC bit). The
	// stream layer pairs such an exchange with its retry.
	Truncated bool
}

// Conn parses one connection's bytes. It is not safe for concurrent use.
//
// The slice of exchanges that Feed and Expire return is the parser's
// again at its next Feed or Expire: the caller copies the exchanges it
// keeps (their records are the caller's).
type Conn interface {
	// Feed takes the next chunk of either direction and returns the
	// exchanges it completed.
	Feed(c Chunk) []Exchange
	// Expire returns the requests waiting longer than timeout at now as
	// exchanges without a response, and forgets them.
	Expire(now time.Time, timeout time.Duration) []Exchange
}

// Start says what the stream layer saw of a connection's beginning.
type Start struct {
	// FromHandshake: the first bytes of each direction are the
	// connection's first bytes (the SYN was seen). Otherwise the agent
	// joined late, and chunks start mid-stream.
	FromHandshake bool
}

// Protocol is a parser of one L7 protocol.
type Protocol interface {
	// Name is the record type it produces.
	Name() v1alpha1.L7Type
	// Detect reports whether the first sampled bytes of a connection,
	// from the client (dir FromClient) or the server, look like this
	// protocol. It must be cheap and reject most other traffic; port
	// hints are the stream layer's business.
	Detect(dir Dir, first []byte) bool
	// New returns a parser for one connection.
	New(s Start) Conn
}

// HeaderAllowlist names the header fields whose values records keep,
// compared without regard to case. A nil one keeps none.
type HeaderAllowlist struct {
	all         bool
	names       []string
	credentials []string
}

// NewHeaderAllowlist returns the allow-list of names; "*" among them
// keeps every field but the credentials, which are never kept.
func NewHeaderAllowlist(names, credentials []string) *HeaderAllowlist {
	a := &HeaderAllowlist{credentials: credentials}
	for _, n := range names {
		if n == "*" {
			a.all = true
		} else {
			a.names = append(a.names, n)
		}
	}
	return a
}

// Keeps reports whether a field named name is kept.
func (a *HeaderAllowlist) Keeps(name string) bool {
	if a == nil {
		return false
	}
	if isASCII(name) {
		return keepsASCII(a, name)
	}
	for _, c := range a.credentials {
		if strings.EqualFold(c, name) {
			return false
		}
	}
	if a.all {
		return true
	}
	for _, n := range a.names {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// KeepsBytes is Keeps for a name in bytes.
func (a *HeaderAllowlist) KeepsBytes(name []byte) bool {
	if a == nil {
		return false
	}
	if isASCII(name) {
		return keepsASCII(a, name)
	}
	for _, c := range a.credentials {
		if bytes.EqualFold([]byte(c), name) {
			return false
		}
	}
	if a.all {
		return true
	}
	for _, n := range a.names {
		if bytes.EqualFold([]byte(n), name) {
			return true
		}
	}
	return false
}

// keepsASCII is Keeps for a name of ASCII bytes, the usual case (a
// token). Unicode's simple folding then agrees with ASCII's, and the
// allow-list's names, tokens too, need comparing only when their length
// is the name's. (A name with other bytes may fold to an ASCII one:
// "\u212A" folds to "k".)
func keepsASCII[S string | []byte](a *HeaderAllowlist, name S) bool {
	for _, c := range a.credentials {
		if equalFoldASCII(c, name) {
			return false
		}
	}
	if a.all {
		return true
	}
	for _, n := range a.names {
		if equalFoldASCII(n, name) {
			return true
		}
	}
	return false
}

func isASCII[S string | []byte](s S) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// equalFoldASCII reports whether s and b are equal, ASCII letters
// compared without case.
func equalFoldASCII[S string | []byte](s string, b S) bool {
	if len(s) != len(b) {
		return false
	}
	for i := 0; i < len(s); i++ {
		x, y := s[i], b[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
