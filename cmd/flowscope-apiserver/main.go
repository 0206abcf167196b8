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

// Command flowscope-apiserver serves flows.flowscope.io, registered with
// kube-apiserver through an APIService, from the node agents.
package main

import (
	"context"

	"flowscope.io/flowscope/apiserver"
	"flowscope.io/flowscope/internal/cli"
)

func main() {
	o := apiserver.NewOptions()
	cli.Main("flowscope-apiserver", o, func(ctx context.Context) error { return apiserver.Run(ctx, o) })
}
