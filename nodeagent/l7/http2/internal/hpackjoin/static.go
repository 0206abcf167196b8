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

package hpackjoin

// staticTable is RFC 7541 Appendix A: index i is staticTable[i-1]. It never
// changes, so a reference to it is exact whatever else was lost.
var staticTable = [...]entry{
	{name: ":authority", known: true},
	{name: ":method", value: "GET", known: true},
	{name: ":method", value: "POST", known: true},
	{name: ":path", value: "/", known: true},
	{name: ":path", value: "/index.html", known: true},
	{name: ":scheme", value: "http", known: true},
	{name: ":scheme", value: "https", known: true},
	{name: ":status", value: "200", known: true},
	{name: ":status", value: "204", known: true},
	{name: ":status", value: "206", known: true},
	{name: ":status", value: "304", known: true},
	{name: ":status", value: "400", known: true},
	{name: ":status", value: "404", known: true},
	{name: ":status", value: "500", known: true},
	{name: "accept-charset", known: true},
	{name: "accept-encoding", value: "gzip, deflate", known: true},
	{name: "accept-language", known: true},
	{name: "accept-ranges", known: true},
	{name: "accept", known: true},
	{name: "access-control-allow-origin", known: true},
	{name: "age", known: true},
	{name: "allow", known: true},
	{name: "authorization", known: true},
	{name: "cache-control", known: true},
	{name: "content-disposition", known: true},
	{name: "content-encoding", known: true},
	{name: "content-language", known: true},
	{name: "content-length", known: true},
	{name: "content-location", known: true},
	{name: "content-range", known: true},
	{name: "content-type", known: true},
	{name: "cookie", known: true},
	{name: "date", known: true},
	{name: "etag", known: true},
	{name: "expect", known: true},
	{name: "expires", known: true},
	{name: "from", known: true},
	{name: "host", known: true},
	{name: "if-match", known: true},
	{name: "if-modified-since", known: true},
	{name: "if-none-match", known: true},
	{name: "if-range", known: true},
	{name: "if-unmodified-since", known: true},
	{name: "last-modified", known: true},
	{name: "link", known: true},
	{name: "location", known: true},
	{name: "max-forwards", known: true},
	{name: "proxy-authenticate", known: true},
	{name: "proxy-authorization", known: true},
	{name: "range", known: true},
	{name: "referer", known: true},
	{name: "refresh", known: true},
	{name: "retry-after", known: true},
	{name: "server", known: true},
	{name: "set-cookie", known: true},
	{name: "strict-transport-security", known: true},
	{name: "transfer-encoding", known: true},
	{name: "user-agent", known: true},
	{name: "vary", known: true},
	{name: "via", known: true},
	{name: "www-authenticate", known: true},
}
