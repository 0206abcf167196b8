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

// Package version holds the version a binary was built as. Release and
// image builds (hack/tools/images) set it with
//
//	-ldflags "-X flowscope.io/flowscope/internal/version.Version=v0.3.0"
//
// and every command prints it with --version. It is a variable, not read
// from the Go build info, because images are built with -buildvcs=false
// (the same sources must give the same bytes whatever the checkout).
package version

// Version is the version of this build; "dev" for a plain go build.
var Version = "dev"

// String is how a command names itself and its build, such as
// "flowscope-agent v0.3.0".
func String(command string) string {
	return command + " " + Version
}
