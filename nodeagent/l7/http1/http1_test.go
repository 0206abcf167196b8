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

package http1

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/l7"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// step is a chunk: data sampled, then miss bytes not sampled; skip
// bytes before it were never sampled at all (a gap). Its time is its
// index in milliseconds.
type step struct {
	dir  l7.Dir
	data string
	miss int
	skip int
}

func c(data string) step            { return step{dir: l7.FromClient, data: data} }
func s(data string) step            { return step{dir: l7.FromServer, data: data} }
func (st step) missing(n int) step  { st.miss = n; return st }
func (st step) afterGap(n int) step { st.skip = n; return st }
func ms(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return fmt.Sprint(t.Sub(t0).Milliseconds())
}

// summary is an exchange in a line: request and response times in ms,
// method, URL, version, code, and Partial.
func summary(x l7.Exchange) string {
	h := x.Record.HTTP
	out := fmt.Sprintf("%s>%s %s %s %s %d", ms(x.Request), ms(x.Response), h.Method, h.URL, h.Protocol, h.Code)
	if x.Partial {
		out += " partial"
	}
	return out
}

// feed runs steps through a new connection and returns its exchanges.
func feed(t *testing.T, p *Protocol, start l7.Start, steps ...step) []l7.Exchange {
	t.Helper()
	cn := p.New(start)
	var off [2]uint64
	var out []l7.Exchange
	for i, st := range steps {
		off[st.dir] += uint64(st.skip)
		ch := l7.Chunk{Dir: st.dir, Time: t0.Add(time.Duration(i+1) * time.Millisecond), Off: off[st.dir],
			Len: len(st.data) + st.miss, Data: []byte(st.data)}
		off[st.dir] += uint64(ch.Len)
		for _, x := range cn.Feed(ch) {
			if x.Record.Type != v1alpha1.L7TypeHTTP || x.Record.HTTP == nil || x.Record.Partial != x.Partial {
				t.Fatalf("bad exchange %+v", x)
			}
			out = append(out, x)
		}
	}
	return out
}

func summaries(xs []l7.Exchange) []string {
	out := []string{}
	for _, x := range xs {
		out = append(out, summary(x))
	}
	return out
}

const (
	get1   = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
	get2   = "GET /b HTTP/1.1\r\nHost: h\r\n\r\n"
	ok5    = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
	nf     = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
	chunk3 = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
)

func TestExchanges(t *testing.T) {
	for name, tc := range map[string]struct {
		start l7.Start
		steps []step
		want  []string
	}{
		"get": {steps: []step{c(get1), s(ok5)}, want: []string{"1>2 GET /a HTTP/1.1 200"}},
		"keep-alive": {steps: []step{c(get1), s(ok5), c(get2), s(nf)},
			want: []string{"1>2 GET /a HTTP/1.1 200", "3>4 GET /b HTTP/1.1 404"}},
		"HEAD: Content-Length without a body": {
			steps: []step{c("HEAD /a HTTP/1.1\r\n\r\n"), s("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"), c(get2), s(nf)},
			want:  []string{"1>2 HEAD /a HTTP/1.1 200", "3>4 GET /b HTTP/1.1 404"}},
		"204 and 304 have no body": {
			steps: []step{c(get1), s("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"), c(get2), s("HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n"), c(get1), s(nf)},
			want:  []string{"1>2 GET /a HTTP/1.1 204", "3>4 GET /b HTTP/1.1 304", "5>6 GET /a HTTP/1.1 404"}},
		"interim responses: the final one is timed": {
			steps: []step{c("POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"), s("HTTP/1.1 100 Continue\r\n\r\n"),
				c("abc"), s("HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"), s("HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")},
			want: []string{"1>5 POST /up HTTP/1.1 201"}},
		"chunked response, sizes split across chunks": {
			steps: []step{c(get1), s("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1"), s("0;ext=1\r\n0123456789\r"), s("\n0\r\nTrailer: x\r\n"), s("\r\n"), c(get2), s(nf)},
			want:  []string{"1>2 GET /a HTTP/1.1 200", "6>7 GET /b HTTP/1.1 404"}},
		"chunked, data not sampled": {
			steps: []step{c(get1), s("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\nab").missing(1022), s("\r\n0\r\n\r\n"), c(get2), s(nf)},
			want:  []string{"1>2 GET /a HTTP/1.1 200", "4>5 GET /b HTTP/1.1 404"}},
		"chunked, a size line not sampled: framing found again at the next response": {
			steps: []step{c(get1), s("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n").missing(30), s("abc"), c(get2), s(nf)},
			want:  []string{"1>2 GET /a HTTP/1.1 200", "4>5 GET /b HTTP/1.1 404"}},
		"a body mostly not sampled": {
			steps: []step{c("PUT /f HTTP/1.1\r\nContent-Length: 100000\r\n\r\nxx").missing(1400), c("xx").missing(98596), s(nf), c(get2), s(ok5)},
			want:  []string{"1>3 PUT /f HTTP/1.1 404", "4>5 GET /b HTTP/1.1 200"}},
		"a gap inside a body": {
			steps: []step{c(get1), s("HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\nab").missing(1000), s("cd").missing(996).afterGap(1000), c(get2), s(nf)},
			want:  []string{"1>2 GET /a HTTP/1.1 200", "4>5 GET /b HTTP/1.1 404"}},
		"chunked request body": {
			steps: []step{c("POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + get2), s(nf), s(ok5)},
			want:  []string{"1>2 POST /p HTTP/1.1 404", "1>3 GET /b HTTP/1.1 200"}},
		"Transfer-Encoding overrides Content-Length": {
			steps: []step{c(get1), s("HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), c(get2), s(nf)},
			want:  []string{"1>2 GET /a HTTP/1.1 200", "3>4 GET /b HTTP/1.1 404"}},
		"a Content-Length list of one value": {
			steps: []step{c(get1), s("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\ncontent-length: 5\r\n\r\nhello"), c(get2), s(nf)},
			want:  []string{"1>2 GET /a HTTP/1.1 200", "3>4 GET /b HTTP/1.1 404"}},
		"bare LF and empty lines before a request": {
			steps: []step{c("\r\n\r\nGET /a HTTP/1.1\nHost: h\n\n"), s("HTTP/1.1 200 OK\nContent-Length: 0\n\n"), c(get2), s(nf)},
			want:  []string{"1>2 GET /a HTTP/1.1 200", "3>4 GET /b HTTP/1.1 404"}},
		"HTTP/1.0, a body until the close": {
			steps: []step{c("GET /old HTTP/1.0\r\n\r\n"), s("HTTP/1.0 200 OK\r\n\r\nHTTP/1.1 500 inside the body\r\n"), s("HTTP/1.1 500 in the body still\r\n")},
			want:  []string{"1>2 GET /old HTTP/1.0 200"}},
		"a response coding other than chunked: until the close": {
			steps: []step{c(get1), s("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nzzz"), s("HTTP/1.1 200 OK\r\n\r\n")},
			want:  []string{"1>2 GET /a HTTP/1.1 200"}},
		"an extension method": {
			steps: []step{c("PROPFIND /d HTTP/1.1\r\nDepth: 1\r\n\r\n"), s("HTTP/1.1 207 Multi-Status\r\nContent-Length: 0\r\n\r\n")},
			want:  []string{"1>2 PROPFIND /d HTTP/1.1 207"}},
		"HTTP/1.x": {
			steps: []step{c("GET /a HTTP/1.2\r\n\r\n"), s("HTTP/1.2 200 OK\r\n\r\n")},
			want:  []string{"1>2 GET /a HTTP/1.2 200"}},

		// Pairing.
		"pipelined": {
			steps: []step{c(get1 + "HEAD /h HTTP/1.1\r\n\r\n" + get2), s(ok5), s("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"), s(nf)},
			want:  []string{"1>2 GET /a HTTP/1.1 200", "1>3 HEAD /h HTTP/1.1 200", "1>4 GET /b HTTP/1.1 404"}},
		"pipelined, responses in one chunk": {
			steps: []step{c(get1 + get2), s(ok5 + nf)},
			want:  []string{"1>2 GET /a HTTP/1.1 200", "1>2 GET /b HTTP/1.1 404"}},
		"pipelined, then a request hidden: those before it pair": {
			steps: []step{c(get1 + get2 + "GE").missing(30), s(ok5), s(nf), s(ok5), c(get1), s(nf)},
			// The third request's start was seen: it keeps its place.
			want: []string{"1>2 GET /a HTTP/1.1 200", "1>3 GET /b HTTP/1.1 404", "1>4    200 partial", "5>- GET /a HTTP/1.1 0 partial", "->6   HTTP/1.1 404 partial"}},
		"a response lost in a gap: the next pairs": {
			steps: []step{c(get1), s(ok5), c(get2), s(nf).afterGap(40), c(get1), s(ok5)},
			want:  []string{"1>2 GET /a HTTP/1.1 200", "3>- GET /b HTTP/1.1 0 partial", "->4   HTTP/1.1 404 partial", "5>6 GET /a HTTP/1.1 200"}},
		"a request lost in a gap": {
			steps: []step{c(get1), s(ok5), c(get1).afterGap(28), s(nf), c(get2), s(ok5)},
			want:  []string{"1>2 GET /a HTTP/1.1 200", "3>- GET /a HTTP/1.1 0 partial", "->4   HTTP/1.1 404 partial", "5>6 GET /b HTTP/1.1 200"}},
		"a response before any request": {
			steps: []step{s(nf), c(get1), s(ok5)},
			want:  []string{"->1   HTTP/1.1 404 partial", "2>3 GET /a HTTP/1.1 200"}},

		// Sampling cuts.
		"head cut by the budget": {
			steps: []step{c("GET /a?q=1 HTTP/1.1\r\nHost: h\r\nUser-Ag").missing(300), s(ok5), c(get2), s(nf)},
			want:  []string{"1>2 GET /a?q=1 HTTP/1.1 200 partial", "3>4 GET /b HTTP/1.1 404"}},
		"request-target cut in its query: the path is kept": {
			steps: []step{c("GET /api/items?token=abc").missing(900), s(ok5)},
			want:  []string{"1>2 GET /api/items  200 partial"}},
		"request-target cut in its path": {
			steps: []step{c("GET /api/ite").missing(900), s(ok5)},
			want:  []string{"1>2 GET   200 partial"}},
		"status line cut before its code: not a response, but a gap": {
			steps: []step{c(get1), s("HTTP/1.1 2").missing(200), c(get2), s(nf)},
			want:  []string{"1>- GET /a HTTP/1.1 0 partial", "3>4 GET /b HTTP/1.1 404"}},
		"response head cut after its code": {
			steps: []step{c(get1), s("HTTP/1.1 503 Service Unava").missing(200), c(get2), s(nf)},
			want:  []string{"1>2 GET /a HTTP/1.1 503", "3>4 GET /b HTTP/1.1 404"}},

		// Ends of HTTP/1.
		"101 Switching Protocols": {
			steps: []step{c("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"), s("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"), c(get1), s(ok5)},
			want:  []string{"1>2 GET /ws HTTP/1.1 101"}},
		"CONNECT tunnel": {
			steps: []step{c("CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n"), s("HTTP/1.1 200 Connection established\r\n\r\n"), c(get1), s(ok5)},
			want:  []string{"1>2 CONNECT db:5432 HTTP/1.1 200"}},
		"CONNECT refused: still HTTP": {
			steps: []step{c("CONNECT db:5432 HTTP/1.1\r\n\r\n"), s("HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"), c(get1), s(ok5)},
			want:  []string{"1>2 CONNECT db:5432 HTTP/1.1 407", "3>4 GET /a HTTP/1.1 200"}},

		// Late join.
		"joined in a body": {
			start: l7.Start{},
			steps: []step{c("xxxx GET / HTTP/1.1\r\n\r\n"), s("yyyy HTTP/1.1 200 OK\r\n\r\n"), c(get1), s(ok5), c(get2), s(nf)},
			want:  []string{"3>4 GET /a HTTP/1.1 200", "5>6 GET /b HTTP/1.1 404"}},
		"joined between messages": {
			start: l7.Start{},
			steps: []step{s(ok5), c(get1), s(ok5), c(get2), s(nf)},
			want:  []string{"2>3 GET /a HTTP/1.1 200", "4>5 GET /b HTTP/1.1 404"}},
	} {
		t.Run(name, func(t *testing.T) {
			if tc.start == (l7.Start{}) && !strings.HasPrefix(name, "joined") {
				tc.start.FromHandshake = true
			}
			got := summaries(feed(t, New(Options{}), tc.start, tc.steps...))
			if !slices.Equal(got, tc.want) {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestHostile feeds bytes no peer should send: the parser loses framing
// (counted), reports nothing it did not read, and finds framing again
// at the next message that starts a chunk.
func TestHostile(t *testing.T) {
	for name, tc := range map[string]struct {
		steps     []step
		want      []string
		malformed uint64
	}{
		"not HTTP":                  {steps: []step{c("\x16\x03\x01\x02\x00"), s("\x16\x03\x03")}, want: []string{}, malformed: 2},
		"HTTP/2 preface":            {steps: []step{c("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")}, want: []string{}, malformed: 1},
		"HTTP/0.9":                  {steps: []step{c("GET /\r\n"), s("<html>")}, want: []string{}, malformed: 2},
		"a space before the target": {steps: []step{c("GET  /a HTTP/1.1\r\n\r\n")}, want: []string{}, malformed: 1},
		"a control in the target":   {steps: []step{c("GET /a\x00b HTTP/1.1\r\n\r\n")}, want: []string{}, malformed: 1},
		"a method too long":         {steps: []step{c(strings.Repeat("G", 40) + " / HTTP/1.1\r\n\r\n")}, want: []string{}, malformed: 1},
		"a status code 000":         {steps: []step{c(get1), s("HTTP/1.1 000 Zero\r\n\r\n")}, want: []string{}, malformed: 1},
		"a status code of 2 digits": {steps: []step{c(get1), s("HTTP/1.1 20 OK\r\n\r\n")}, want: []string{}, malformed: 1},
		"a status line run on":      {steps: []step{c(get1), s("HTTP/1.1 2000\r\n\r\n")}, want: []string{}, malformed: 1},
		// Bytes that did not parse may have hidden a message: the next
		// exchange is not paired, the one after is.
		"framing found again after garbage": {
			steps: []step{c("\x00\x01garbage\r\n"), c(get1), s("junk"), s(ok5), c(get2), s(nf)},
			want:  []string{"2>- GET /a HTTP/1.1 0 partial", "->4   HTTP/1.1 200 partial", "5>6 GET /b HTTP/1.1 404"}, malformed: 2},
		"Content-Length not a number": {
			steps: []step{c(get1), s("HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello"), c(get2), s(nf)},
			want:  []string{"1>2 GET /a HTTP/1.1 200", "3>4 GET /b HTTP/1.1 404"}, malformed: 1},
		"Content-Length negative": {
			steps: []step{c(get1), s("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"), c(get2), s(nf)},
			want:  []string{"1>2 GET /a HTTP/1.1 200", "3>4 GET /b HTTP/1.1 404"}, malformed: 1},
		"Content-Lengths that disagree": {
			steps: []step{c(get1), s("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"), c(get2), s(nf)},
			want:  []string{"1>2 GET /a HTTP/1.1 200", "3>4 GET /b HTTP/1.1 404"}, malformed: 1},
		"Content-Length too large": {
			steps: []step{c(get1), s("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n"), c(get2), s(nf)},
			want:  []string{"1>2 GET /a HTTP/1.1 200", "3>4 GET /b HTTP/1.1 404"}, malformed: 1},
		"a chunk size too large": {
			steps: []step{c(get1), s("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n"), c(get2), s(nf)},
			want:  []string{"1>2 GET /a HTTP/1.1 200", "3>4 GET /b HTTP/1.1 404"}, malformed: 1},
		"a chunk size not hex": {
			steps: []step{c(get1), s("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), c(get2), s(nf)},
			want:  []string{"1>2 GET /a HTTP/1.1 200", "3>4 GET /b HTTP/1.1 404"}, malformed: 1},
		"chunk data without its CRLF": {
			steps: []step{c(get1), s("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naXY"), c(get2), s(nf)},
			want:  []string{"1>2 GET /a HTTP/1.1 200", "3>4 GET /b HTTP/1.1 404"}, malformed: 1},
		"a request coding other than chunked": {
			steps: []step{c("POST /p HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nxyz"), s("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")},
			want:  []string{"1>2 POST /p HTTP/1.1 400"}, malformed: 1},
		"field lines that are not, ignored": {
			steps: []step{c("GET /a HTTP/1.1\r\nno colon here\r\nBad Name: x\r\n folded: y\r\n: empty\r\nOk: 1\r\n\r\n"), s(ok5)},
			want:  []string{"1>2 GET /a HTTP/1.1 200"}},
		"a head longer than maxHead": {
			steps: []step{c("GET /a HTTP/1.1\r\n" + strings.Repeat("X-Long: "+strings.Repeat("l", 1000)+"\r\n", 70)), s(ok5)},
			want:  []string{"1>2 GET /a HTTP/1.1 200 partial"}},
		"a Content-Length line longer than maxLine": {
			steps: []step{c(get1), s("HTTP/1.1 200 OK\r\nContent-Length: " + strings.Repeat("0", maxLine) + "5\r\n\r\nhello"), c(get2), s(nf)},
			want:  []string{"1>2 GET /a HTTP/1.1 200", "3>4 GET /b HTTP/1.1 404"}, malformed: 1},
		"a status line where a request should be": {
			steps: []step{c("HTTP/1.1 200 OK\r\n\r\n"), c(get1), s(ok5), c(get2), s(nf)},
			want:  []string{"2>- GET /a HTTP/1.1 0 partial", "->3   HTTP/1.1 200 partial", "4>5 GET /b HTTP/1.1 404"}, malformed: 1},
		"a request where a response should be": {
			steps: []step{c(get1), s(get2), s(ok5), c(get2), s(nf)},
			want:  []string{"1>- GET /a HTTP/1.1 0 partial", "->3   HTTP/1.1 200 partial", "4>5 GET /b HTTP/1.1 404"}, malformed: 1},
	} {
		t.Run(name, func(t *testing.T) {
			p := New(Options{})
			got := summaries(feed(t, p, l7.Start{FromHandshake: true}, tc.steps...))
			if !slices.Equal(got, tc.want) {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
			if m := p.Stats().Malformed.Load(); m != tc.malformed {
				t.Errorf("malformed %d, want %d", m, tc.malformed)
			}
		})
	}
}

// TestChunkEdges covers chunks the stream layer should not send: overlap,
// a Len shorter than the data, an unknown direction.
func TestChunkEdges(t *testing.T) {
	cn := New(Options{}).New(l7.Start{FromHandshake: true})
	var got []string
	fd := func(ch l7.Chunk) {
		for _, x := range cn.Feed(ch) {
			got = append(got, summary(x))
		}
	}
	fd(l7.Chunk{Dir: 7, Time: t0, Data: []byte(get1)})
	fd(l7.Chunk{Dir: l7.FromClient, Time: t0.Add(time.Millisecond), Off: 0, Len: 3, Data: []byte(get1[:10])}) // Len < len(Data)
	fd(l7.Chunk{Dir: l7.FromClient, Time: t0.Add(2 * time.Millisecond), Off: 5, Len: len(get1) - 5, Data: []byte(get1[5:])})
	fd(l7.Chunk{Dir: l7.FromClient, Time: t0.Add(3 * time.Millisecond), Off: 0, Len: 4, Data: []byte("GET ")}) // wholly old
	fd(l7.Chunk{Dir: l7.FromServer, Time: t0.Add(4 * time.Millisecond), Off: 0, Len: len(ok5), Data: []byte(ok5)})
	if want := []string{"1>4 GET /a HTTP/1.1 200"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestRecord checks what a record keeps of a request: names and values as
// seen, within the bounds.
func TestRecord(t *testing.T) {
	var b strings.Builder
	b.WriteString("GET /x?y=1 HTTP/1.1\r\nHost:  svc:8080 \r\nuser-agent:\tcurl/8\r\nX-Bad: caf\xe9\r\nX-Empty:\r\n")
	b.WriteString("X-Long: " + strings.Repeat("é", 200) + "\r\n")
	for i := range 40 {
		fmt.Fprintf(&b, "X-%02d: %d\r\n", i, i)
	}
	b.WriteString("\r\n")
	xs := feed(t, New(Options{}), l7.Start{FromHandshake: true}, c(b.String()), s(ok5))
	if len(xs) != 1 {
		t.Fatalf("%d exchanges", len(xs))
	}
	h := xs[0].Record.HTTP
	if h.Method != "GET" || h.URL != "/x?y=1" || h.Protocol != "HTTP/1.1" || h.Code != 200 || xs[0].Partial {
		t.Errorf("record %+v", *h)
	}
	want := []v1alpha1.HTTPHeader{{Key: "Host", Value: "svc:8080"}, {Key: "user-agent", Value: "curl/8"},
		{Key: "X-Bad", Value: "caf\uFFFD"}, {Key: "X-Empty", Value: ""}, {Key: "X-Long", Value: strings.Repeat("é", 128)}}
	for i := range MaxHeaders - len(want) {
		want = append(want, v1alpha1.HTTPHeader{Key: fmt.Sprintf("X-%02d", i), Value: fmt.Sprint(i)})
	}
	if !slices.Equal(h.Headers, want) {
		t.Errorf("headers\n%q\nwant\n%q", h.Headers, want)
	}

	// MaxHeaderBytes: the fields that would exceed it are left out.
	b.Reset()
	b.WriteString("GET / HTTP/1.1\r\n")
	for i := range 20 {
		fmt.Fprintf(&b, "X-%02d: %s\r\n", i, strings.Repeat("v", 250))
	}
	b.WriteString("Last: 1\r\n\r\n")
	h = feed(t, New(Options{}), l7.Start{FromHandshake: true}, c(b.String()), s(ok5))[0].Record.HTTP
	size := 0
	for _, f := range h.Headers {
		size += len(f.Key) + len(f.Value)
	}
	if size > MaxHeaderBytes || len(h.Headers) != 17 || h.Headers[15].Key != "X-15" || h.Headers[16].Key != "Last" {
		t.Errorf("%d fields, %d bytes, last %q", len(h.Headers), size, h.Headers[len(h.Headers)-1].Key)
	}

	// A request-target over MaxURL keeps its path.
	long := "/p?" + strings.Repeat("q", MaxURL)
	x := feed(t, New(Options{}), l7.Start{FromHandshake: true}, c("GET "+long+" HTTP/1.1\r\n\r\n"), s(ok5))[0]
	if x.Record.HTTP.URL != "/p" || !x.Partial {
		t.Errorf("URL %q, Partial %v", x.Record.HTTP.URL, x.Partial)
	}
}

// TestExpire covers requests without responses: a timeout is reported
// once, not Partial; its late response is dropped; a request whose
// response may have been lost in a gap is Partial.
func TestExpire(t *testing.T) {
	var cn l7.Conn
	var coff, soff uint64
	fresh := func() {
		cn, coff, soff = New(Options{}).New(l7.Start{FromHandshake: true}), 0, 0
	}
	send := func(dir l7.Dir, at time.Duration, data string, skip int) []string {
		off := &coff
		if dir == l7.FromServer {
			off = &soff
		}
		*off += uint64(skip)
		xs := cn.Feed(l7.Chunk{Dir: dir, Time: t0.Add(at), Off: *off, Len: len(data), Data: []byte(data)})
		*off += uint64(len(data))
		return summaries(xs)
	}
	expire := func(at time.Duration) []string {
		return summaries(cn.Expire(t0.Add(at), 10*time.Second))
	}
	check := func(what string, got []string, want ...string) {
		t.Helper()
		if want == nil {
			want = []string{}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: got %q, want %q", what, got, want)
		}
	}
	fresh()
	check("request", send(l7.FromClient, 0, get1, 0))
	check("before the timeout", expire(10*time.Second))
	check("after", expire(11*time.Second), "0>- GET /a HTTP/1.1 0")
	check("again", expire(12*time.Second))
	check("the late response", send(l7.FromServer, 13*time.Second, ok5, 0))
	check("next request", send(l7.FromClient, 14*time.Second, get2, 0))
	check("its response", send(l7.FromServer, 14500*time.Millisecond, nf, 0), "14000>14500 GET /b HTTP/1.1 404")

	// Pipelined requests expired: their late responses are dropped in
	// order.
	fresh()
	check("pipelined", send(l7.FromClient, 0, get1+get2, 0))
	check("expired", expire(11*time.Second), "0>- GET /a HTTP/1.1 0", "0>- GET /b HTTP/1.1 0")
	check("late responses", send(l7.FromServer, 12*time.Second, ok5+nf, 0))
	check("request", send(l7.FromClient, 13*time.Second, get2, 0))
	check("its response", send(l7.FromServer, 14*time.Second, ok5, 0), "13000>14000 GET /b HTTP/1.1 200")

	// The server's bytes have a gap: the response may have gone by.
	fresh()
	check("request", send(l7.FromClient, 0, get1, 0))
	check("a gap", send(l7.FromServer, 1*time.Second, "xx", 30))
	check("expired", expire(11*time.Second), "0>- GET /a HTTP/1.1 0 partial")
}

// TestMaxPending bounds the requests waiting: the oldest are given up,
// counted, and the order is then unknown.
func TestMaxPending(t *testing.T) {
	p := New(Options{MaxPending: 4})
	steps := []step{}
	for range 6 {
		steps = append(steps, c(get1))
	}
	for range 6 {
		steps = append(steps, s(nf))
	}
	xs := feed(t, p, l7.Start{FromHandshake: true}, steps...)
	for _, x := range xs {
		if !x.Partial || !x.Request.IsZero() && !x.Response.IsZero() {
			t.Errorf("%s: want only unpaired halves", summary(x))
		}
	}
	if len(xs) != 12 || p.Stats().Evicted.Load() != 2 {
		t.Errorf("got %q, evicted %d", summaries(xs), p.Stats().Evicted.Load())
	}
}

func TestDetect(t *testing.T) {
	p := New(Options{})
	for _, tc := range []struct {
		dir   l7.Dir
		first string
		want  bool
	}{
		{l7.FromClient, "GET / HTTP/1.1\r\n", true},
		{l7.FromClient, "OPTIONS * HTTP/1.1\r\n", true},
		{l7.FromClient, "CONNECT db:5432 HTTP/1.1\r\n", true},
		{l7.FromClient, "PATCH ", true},
		{l7.FromClient, "GET", false},
		{l7.FromClient, "GETX / HTTP/1.1", false},
		{l7.FromClient, "GET  /", false},
		{l7.FromClient, "get / HTTP/1.1", false},
		{l7.FromClient, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false},
		{l7.FromClient, "\x16\x03\x01", false},
		{l7.FromClient, "", false},
		{l7.FromServer, "HTTP/1.1 200 OK\r\n", true},
		{l7.FromServer, "HTTP/1.0 ", true},
		{l7.FromServer, "HTTP/2 200", false},
		{l7.FromServer, "GET / HTTP/1.1", false},
	} {
		if got := p.Detect(tc.dir, []byte(tc.first)); got != tc.want {
			t.Errorf("Detect(%s, %q) = %v, want %v", tc.dir, tc.first, got, tc.want)
		}
	}
	if p.Name() != v1alpha1.L7TypeHTTP {
		t.Errorf("Name() = %q", p.Name())
	}
}
