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

// Package redact removes from flows what their readers should not see:
// credentials and other secrets that L7 records carry as they come off the
// wire or out of a Hubble export file. Everyone who may view a namespace
// may read its flows, so a flow must hold no more than `view` would show:
// an Authorization header, a session cookie or a token in a query string
// is a Secret's worth of data.
//
// The ingest pipeline applies a Redactor to every flow before it is
// versioned, so nothing unredacted reaches the store, the stored tier, the
// flow log file or a watch, whatever the source.
package redact

import (
	"fmt"
	"strings"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// Marker replaces the values of headers that are not kept. It is Hubble's
// own marker, so consumers of the flow log file that know Hubble's
// redaction read ours alike, and a record Hubble redacted reads the same
// once imported.
const Marker = "HUBBLE_REDACTED"

// AllHeaders in a header allow-list keeps the values of every header but
// the Credentials.
const AllHeaders = "*"

// Credentials are the headers whose values are never kept, whatever the
// allow-list says: they are credentials by definition.
var Credentials = []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie"}

// DefaultHeaderAllowlist are the headers whose values are kept by default:
// what describes a request (its content, its client, its trace) without
// identifying a user or carrying a token.
var DefaultHeaderAllowlist = []string{"Accept", "Content-Length", "Content-Type", "User-Agent", "X-Request-Id"}

// urlHeaders hold a URL or part of one: when their values are kept, the
// URL rules apply to them too, so that a query string dropped from the URL
// does not come back through the Referer.
var urlHeaders = map[string]bool{
	":path": true, ":authority": true, "host": true, "referer": true,
	"location": true, "content-location": true, "origin": true,
}

// Options choose what a Redactor keeps.
type Options struct {
	// HeaderAllowlist names the HTTP headers whose values are kept,
	// without regard to case; AllHeaders keeps every value but the
	// Credentials'. Every other header keeps its name, with the value
	// Marker.
	HeaderAllowlist []string
	// KeepQueryStrings keeps the query strings of URLs.
	KeepQueryStrings bool
}

// Redactor removes secrets from flows. It holds no state that changes, so
// one may be shared by any number of goroutines.
type Redactor struct {
	allow     map[string]bool // lower case
	allowAll  bool
	keepQuery bool
}

// New returns a Redactor, or an error when the allow-list names a
// credential or something that is not a header name.
func New(opts Options) (*Redactor, error) {
	r := &Redactor{allow: map[string]bool{}, keepQuery: opts.KeepQueryStrings}
	for _, name := range opts.HeaderAllowlist {
		if name == AllHeaders {
			r.allowAll = true
			continue
		}
		if !isHeaderName(name) {
			return nil, fmt.Errorf("%q is not an HTTP header name", name)
		}
		if isCredential(name) {
			return nil, fmt.Errorf("the value of %s is a credential: it is never kept", name)
		}
		r.allow[strings.ToLower(name)] = true
	}
	return r, nil
}

// Flow redacts f in place. The pipeline owns the flows it is given, and
// versions and names them in place too.
func (r *Redactor) Flow(f *v1alpha1.Flow) {
	if f == nil || f.L7 == nil {
		return
	}
	// DNS names, Kafka topics and gRPC methods name things, they do not
	// authenticate anyone: they stay. A gRPC call's response headers
	// follow the allow-list as HTTP's do.
	if g := f.L7.GRPC; g != nil {
		for i := range g.ResponseHeaders {
			g.ResponseHeaders[i] = r.header(g.ResponseHeaders[i])
		}
	}
	h := f.L7.HTTP
	if h == nil {
		return
	}
	h.URL = URL(h.URL, r.keepQuery)
	for i := range h.Headers {
		h.Headers[i] = r.header(h.Headers[i])
	}
	// Response headers follow the same allow-list: Set-Cookie is a
	// credential like Cookie, and Location a URL like Referer.
	for i := range h.ResponseHeaders {
		h.ResponseHeaders[i] = r.header(h.ResponseHeaders[i])
	}
}

func (r *Redactor) header(h v1alpha1.HTTPHeader) v1alpha1.HTTPHeader {
	if !isHeaderName(h.Key) {
		// Names are kept because they are protocol tokens; a "name"
		// that is not one is data like any value.
		return v1alpha1.HTTPHeader{Key: Marker, Value: Marker}
	}
	if h.Value == "" || h.Value == Marker {
		return h
	}
	// The name in lower case, in a buffer on the stack: a lookup with
	// string(lower) does not allocate.
	var buf [64]byte
	lower := appendLower(buf[:0], h.Key)
	switch {
	case isCredentialToken(lower), !r.allowAll && !r.allow[string(lower)]:
		h.Value = Marker
	case urlHeaders[string(lower)]:
		h.Value = URL(h.Value, r.keepQuery)
	}
	return h
}

// appendLower appends s in lower case (ASCII: header names are tokens) to
// b.
func appendLower(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

func isCredential(name string) bool {
	for _, c := range Credentials {
		if strings.EqualFold(c, name) {
			return true
		}
	}
	return false
}

// isCredentialToken is isCredential for a header name that is a token
// (ASCII), in lower case: Unicode's folding then agrees with ASCII's, so a
// lookup in the lower-case credentials answers.
func isCredentialToken(lower []byte) bool { return credentialTokens[string(lower)] }

// credentialTokens are the Credentials in lower case.
var credentialTokens = func() map[string]bool {
	m := map[string]bool{}
	for _, c := range Credentials {
		m[strings.ToLower(c)] = true
	}
	return m
}()

// isHeaderName reports whether s is an HTTP field name (RFC 9110's token),
// or an HTTP/2 pseudo-header such as :path.
func isHeaderName(s string) bool {
	s = strings.TrimPrefix(s, ":")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// URL returns s without userinfo (user:password@) and fragment, and
// without its query string unless keepQuery; scheme, host, port and path
// stay as they were. It works on the string, not on a parsed URL, so a URL
// that net/url refuses is redacted all the same, and one it accepts is
// never read as having userinfo afterwards.
//
// Any '@' before the path is taken for the end of userinfo: in a request
// URL ("/path", "http://host/path", "host:port") nothing else may hold one.
func URL(s string, keepQuery bool) string {
	// A fragment never reaches a server: whatever follows '#' is the
	// client's, and net/url cuts it before the query too.
	if i := strings.IndexByte(s, '#'); i >= 0 {
		s = s[:i]
	}
	query := ""
	if i := strings.IndexByte(s, '?'); i >= 0 {
		if keepQuery {
			query = s[i:]
		}
		s = s[:i]
	}
	prefix, rest := "", s
	for {
		if prefix == "" {
			if n := schemeLen(rest); n > 0 && strings.HasPrefix(rest[n:], "://") {
				prefix, rest = rest[:n+3], rest[n+3:]
			} else if strings.HasPrefix(rest, "//") {
				prefix, rest = "//", rest[2:]
			} else if strings.HasPrefix(rest, "/") {
				break // a path alone
			}
		}
		// The authority runs to the path; without "//" before it, as in
		// "host:port", it is what precedes the first '/'.
		end := strings.IndexByte(rest, '/')
		if end < 0 {
			end = len(rest)
		}
		at := strings.LastIndexByte(rest[:end], '@')
		if at < 0 {
			break
		}
		rest = rest[at+1:]
		if prefix != "" {
			break // the authority after its last '@' holds no other
		}
		// Without a scheme what followed '@' may begin one,
		// "x@http://user:pw@host/": look again. Each round starts past
		// the last, so the work stays linear.
	}
	return prefix + rest + query
}

// schemeLen returns the length of the URL scheme s begins with (RFC 3986: a
// letter, then letters, digits, '+', '-', '.'), not counting ':', or 0.
func schemeLen(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9', c == '+', c == '-', c == '.':
			if i == 0 {
				return 0
			}
		case c == ':':
			return i
		default:
			return 0
		}
	}
	return 0
}
