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

package agentwire_test

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/flowsummary"
	"flowscope.io/flowscope/internal/flowtest"
)

// summaryResponse returns a summary with every field of an edge set: drops,
// L7 with latencies, and an Other edge beyond a bound of three edges.
func summaryResponse(tb testing.TB) *agentwire.SummaryResponse {
	agg := flowsummary.New(3)
	flows := flowtest.RealisticFlows(tb, 20)
	for i := range flows {
		f := &flows[i]
		if i%3 == 0 {
			f.Verdict, f.DropReason = v1alpha1.VerdictDropped, "POLICY_DENIED"
		}
		if i%2 == 0 {
			f.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, HTTP: &v1alpha1.HTTP{Code: int32(200 + 100*(i%4))},
				Latency: &metav1.Duration{Duration: time.Duration(i+1) * time.Millisecond}}
		}
		agg.Add(f)
	}
	return &agentwire.SummaryResponse{SnapshotRV: 1772442000000000, Flows: int64(len(flows)), Edges: agg.Edges()}
}

// plain is an agent of a release without summaries.
type plain struct{}

func (plain) List(context.Context, *agentwire.ListRequest) (*agentwire.ListResponse, error) {
	return nil, status.Error(codes.Unimplemented, "")
}

func (plain) Get(context.Context, *agentwire.GetRequest) (*agentwire.GetResponse, error) {
	return nil, status.Error(codes.Unimplemented, "")
}

func (plain) Feed(agentwire.FeedStream) error { return status.Error(codes.Unimplemented, "") }

// summarizing serves a fixed summary.
type summarizing struct {
	plain
	resp *agentwire.SummaryResponse
}

func (s summarizing) Summarize(_ context.Context, req *agentwire.SummaryRequest) (*agentwire.SummaryResponse, error) {
	if req.MaxEdges != 3 || req.Filter.Namespace != "shop" {
		return nil, status.Errorf(codes.InvalidArgument, "got %+v", req)
	}
	return s.resp, nil
}

// serve serves srv over an in-memory connection with the service's
// options and returns a client of it.
func serve(t *testing.T, srv agentwire.Server) *agentwire.Client {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	s := grpc.NewServer(agentwire.ServerOptions()...)
	agentwire.Register(s, srv)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet", append(agentwire.DialOptions(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return agentwire.NewClient(conn)
}

// TestSummarizeCall: Summarize travels over gRPC with the codec, and an
// agent that does not implement it answers Unimplemented, which the
// aggregated server counts as an agent that did not answer.
func TestSummarizeCall(t *testing.T) {
	want := summaryResponse(t)
	c := serve(t, summarizing{resp: want})
	got, err := c.Summarize(context.Background(), &agentwire.SummaryRequest{Filter: flowfilter.Filter{Namespace: "shop"}, MaxEdges: 3})
	if err != nil {
		t.Fatal(err)
	}
	if j1, j2 := toJSON(t, got), toJSON(t, want); !bytes.Equal(j1, j2) {
		t.Errorf("got\n%s\nwant\n%s", j1, j2)
	}
	_, err = serve(t, plain{}).Summarize(context.Background(), &agentwire.SummaryRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("an agent without summaries: %v, want Unimplemented", err)
	}
}
