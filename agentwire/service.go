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

package agentwire

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// serviceName is the gRPC service the agents serve.
const serviceName = "flowscope.agent.v1alpha1.Agent"

// Server is what an agent implements.
type Server interface {
	List(context.Context, *ListRequest) (*ListResponse, error)
	Get(context.Context, *GetRequest) (*GetResponse, error)
	// Feed serves a Feed call (see FeedRequest) until the stream ends.
	Feed(FeedStream) error
}

// FeedStream is the agent's end of a Feed call.
type FeedStream interface {
	Context() context.Context
	Send(*FeedEvent) error
	Recv() (*FeedRequest, error)
}

// ServerOptions returns the gRPC server options the service needs.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodec(Codec{}), grpc.MaxRecvMsgSize(1 << 20),
		// The aggregated server keeps one connection per agent for its
		// session and every list and get; without a limit of its own the
		// server advertises none, and clients hold to HTTP/2's default of
		// 100 calls at once.
		grpc.MaxConcurrentStreams(maxConcurrentStreams)}
}

// maxConcurrentStreams bounds the calls in flight on one connection.
const maxConcurrentStreams = 10000

// Register registers srv on s.
func Register(s *grpc.Server, srv Server) {
	s.RegisterService(&serviceDesc, srv)
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: serviceName,
	HandlerType: (*Server)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "List", Handler: unary("List", func(s Server, ctx context.Context, r *ListRequest) (any, error) { return s.List(ctx, r) })},
		{MethodName: "Get", Handler: unary("Get", func(s Server, ctx context.Context, r *GetRequest) (any, error) { return s.Get(ctx, r) })},
		{MethodName: "Summarize", Handler: unary("Summarize", summarize)},
	},
	Streams: []grpc.StreamDesc{
		{StreamName: "Feed", ServerStreams: true, ClientStreams: true, Handler: feedHandler},
	},
}

func unary[Req any](method string, call func(Server, context.Context, *Req) (any, error)) func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		req := new(Req)
		if err := dec(req); err != nil {
			return nil, err
		}
		if interceptor == nil {
			return call(srv.(Server), ctx, req)
		}
		info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + serviceName + "/" + method}
		return interceptor(ctx, req, info, func(ctx context.Context, req any) (any, error) {
			return call(srv.(Server), ctx, req.(*Req))
		})
	}
}

type feedServerStream struct{ grpc.ServerStream }

func (s feedServerStream) Send(e *FeedEvent) error { return s.SendMsg(e) }

func (s feedServerStream) Recv() (*FeedRequest, error) {
	req := new(FeedRequest)
	if err := s.RecvMsg(req); err != nil {
		return nil, err
	}
	return req, nil
}

func feedHandler(srv any, stream grpc.ServerStream) error {
	// The header goes out at once, before any event: a server waits for
	// it to learn what it may ask (FeedClient.Features).
	if err := stream.SendHeader(metadata.Pairs(FeaturesHeader, FeatureHeartbeat)); err != nil {
		return err
	}
	return srv.(Server).Feed(feedServerStream{stream})
}

// Client calls one agent.
type Client struct {
	conn grpc.ClientConnInterface
}

// NewClient returns a client over conn. Dial conn with DialOptions.
func NewClient(conn grpc.ClientConnInterface) *Client { return &Client{conn: conn} }

// DialOptions returns the gRPC dial options the service needs.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.ForceCodec(Codec{}), grpc.MaxCallRecvMsgSize(256<<20))}
}

// List calls the agent's List.
func (c *Client) List(ctx context.Context, req *ListRequest) (*ListResponse, error) {
	resp := new(ListResponse)
	if err := c.conn.Invoke(ctx, "/"+serviceName+"/List", req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// Get calls the agent's Get.
func (c *Client) Get(ctx context.Context, req *GetRequest) (*GetResponse, error) {
	resp := new(GetResponse)
	if err := c.conn.Invoke(ctx, "/"+serviceName+"/Get", req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// FeedClient is the aggregated server's end of a Feed call. Send and
// Recv may be called from different goroutines, each from one at a time.
type FeedClient struct{ stream grpc.ClientStream }

// Send sends a request.
func (s *FeedClient) Send(req *FeedRequest) error { return s.stream.SendMsg(req) }

// Recv returns the next event.
func (s *FeedClient) Recv() (*FeedEvent, error) {
	e := new(FeedEvent)
	if err := s.stream.RecvMsg(e); err != nil {
		return nil, err
	}
	return e, nil
}

// Features returns the features the agent announced for this call. It
// waits for the header, which an agent of this release sends at once and
// an older one only with its first event.
func (s *FeedClient) Features() ([]string, error) {
	md, err := s.stream.Header()
	if err != nil {
		return nil, err
	}
	return md.Get(FeaturesHeader), nil
}

// Feed opens a Feed call; cancel ctx to end it.
func (c *Client) Feed(ctx context.Context) (*FeedClient, error) {
	stream, err := c.conn.NewStream(ctx, &serviceDesc.Streams[0], "/"+serviceName+"/Feed")
	if err != nil {
		return nil, err
	}
	return &FeedClient{stream: stream}, nil
}
