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

// Package http2 parses HTTP/2 without TLS (h2c, as plaintext gRPC uses it)
// from sampled TCP bytes: it pairs each request with its response by
// stream, and reports gRPC calls as such.
//
// Each direction is read in wire order: the client preface, frames, and
// header blocks through that direction's HPACK decoder (package
// internal/hpackjoin), so that the dynamic table is always the encoder's.
// DATA is skipped by its length, seen or not. A connection seen from its
// first bytes decodes exactly. One joined late decodes what it can: a
// reference to a table entry inserted before the join is unknown, and
// every field it could be stays empty in a record marked partial, while
// entries inserted since are known. A header block cut by the sampling
// budget, or frame boundaries lost in unsampled bytes, make the direction
// start over as after a late join: nothing is mis-decoded, and nothing
// guessed.
package http2

import (
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/l7"
)

// Defaults of Protocol's limits.
const (
	DefaultMaxStreams     = 1024
	DefaultMaxTableSize   = 64 << 10
	DefaultMaxHeaderBlock = 64 << 10
)

// Protocol is the HTTP/2 parser. The zero value has the default limits.
//
// Name is HTTP; calls that carry a gRPC content type (or grpc-status)
// become records of type GRPC (service, method, status), as Hubble's
// gRPC flows do (the agent's Hubble parser turns them into the same
// record), and the others HTTP records with Protocol "HTTP/2" and the
// request path as URL.
type Protocol struct {
	// MaxStreams bounds the streams tracked per connection; over it, the
	// oldest is reported, partial. Default DefaultMaxStreams.
	MaxStreams int
	// MaxTableSize caps the HPACK table kept per direction, whatever
	// SETTINGS allow: references to entries beyond it read as unknown.
	// Default and maximum DefaultMaxTableSize.
	MaxTableSize int
	// MaxHeaderBlock bounds the bytes of one header block read; a longer
	// one is read as cut. Default DefaultMaxHeaderBlock.
	MaxHeaderBlock int
	// ResponseHeaders names the response header fields that HTTP and
	// gRPC records keep (and trailers, when the record waits for them,
	// as a gRPC call's does), at most MaxHeaders of at most
	// MaxHeaderValue bytes each; nil keeps none. A field whose name or
	// value refers to a table entry from before a late join is left out.
	// A gRPC record's grpc-message is kept whatever the list says.
	ResponseHeaders *l7.HeaderAllowlist
}

// Bounds of the response headers a record keeps.
const (
	MaxHeaders     = 32
	MaxHeaderValue = 256
)

var _ l7.Protocol = Protocol{}

// Name implements l7.Protocol.
func (Protocol) Name() v1alpha1.L7Type { return v1alpha1.L7TypeHTTP }

// Detect implements l7.Protocol: the client preface, or, for a connection
// joined late, frames that plausibly start at first[0] (see
// plausibleStart: every header well formed with defined flags only,
// payloads that parse, header blocks that decode, and two frames or one
// that ends exactly at the end of first).
func (Protocol) Detect(dir l7.Dir, first []byte) bool {
	if dir == l7.FromClient {
		n := min(len(first), len(clientPreface))
		if n >= 16 && string(first[:n]) == clientPreface[:n] {
			return true
		}
	}
	return plausibleStart(first, defaultMaxFrame, true)
}

// New implements l7.Protocol.
func (p Protocol) New(s l7.Start) l7.Conn { return newConn(p, s) }

func (p Protocol) maxStreams() int {
	if p.MaxStreams <= 0 {
		return DefaultMaxStreams
	}
	return p.MaxStreams
}

func (p Protocol) maxTableSize() int {
	if p.MaxTableSize <= 0 || p.MaxTableSize > DefaultMaxTableSize {
		return DefaultMaxTableSize
	}
	return p.MaxTableSize
}

func (p Protocol) maxHeaderBlock() int {
	if p.MaxHeaderBlock <= 0 {
		return DefaultMaxHeaderBlock
	}
	return p.MaxHeaderBlock
}
