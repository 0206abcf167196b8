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

// Package protobench is the agent API as protobuf (agent.proto, generated
// by hack/update-protobench.sh) for BenchmarkProtobench in agentwire's
// tests, which decided that generated messages and gRPC stubs should not
// replace agentwire's hand-written codec and ServiceDesc: they win on no
// hot path.
//
// Protobuf against agentwire, one encode plus decode from agentwire's types
// back to them (flowcodec's work in both); CPU is cpu-ns/op, since on the
// shared machine sec/op varied by ±20-35%; grpc is the codecs as gRPC calls
// them:
//
//	                      CPU codec / grpc   B/op codec / grpc   allocs   bytes/msg
//	list page, 500 flows  ~ (p=0.88) / ~     -3.8% / -13%        +7%      +0.4%
//	feed event, 1 flow    +21% / ~           +15% / +8.7%        18 → 22  -0.4%
//	feed request          +194% / +157%      +78% / +51%         6 → 12   55 → 58
//
// flowcodec is most of a list page either way; protobuf copies every flow's
// bytes once more (protobuf-go never aliases bytes on decode). Its one gain
// is gRPC's proto codec, which pools its buffers, where gRPC's bridge for a
// v1 codec like agentwire.Codec copies every received message (117 KiB a
// page): an encoding.CodecV2 in agentwire would get it without protobuf.
// The nested Filter and Timestamp messages double a request's allocations.
//
// protoc-gen-go-grpc (v1.6.2) writes 199 lines for this service that make
// the same calls as service.go's hundred: Invoke, NewStream, the same unary
// handler and interceptor, and grpc.GenericServerStream and
// GenericClientStream, which service.go could use as they are. They are
// typed to the generated messages, so they come only with them and with
// the conversions measured above. What protobuf would bring is not speed
// but field-level evolution: agents and servers of different releases
// could talk, where WireVersion makes them upgrade together.
//
// Reproduce with
//
//	go test ./agentwire -run '^$' -bench Protobench -benchmem -count 8 -benchtime 2s >pb.txt
//	go run golang.org/x/perf/cmd/benchstat@latest -col /wire pb.txt
package protobench
