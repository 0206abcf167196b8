#!/usr/bin/env bash

# Copyright The Flowscope Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

# Regenerates agentwire/internal/protobench/agent.pb.go from agent.proto:
# the protobuf messages that agentwire/protobench_test.go measures against
# agentwire's own codec. protoc comes from Debian (apt-get) when missing,
# protoc-gen-go is the version of google.golang.org/protobuf in go.mod.
set -o errexit -o nounset -o pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"

if ! command -v protoc >/dev/null || [[ ! -f /usr/include/google/protobuf/timestamp.proto ]]; then
  SUDO=""
  [[ "$(id -u)" -eq 0 ]] || SUDO=sudo
  echo "protoc: installing it from Debian"
  ${SUDO} apt-get update -qq
  DEBIAN_FRONTEND=noninteractive ${SUDO} apt-get install -y -qq protobuf-compiler libprotobuf-dev >/dev/null
fi

BIN="${ROOT}/_output/codegen-bin"
mkdir -p "${BIN}"
go build -o "${BIN}/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go

DIR=agentwire/internal/protobench
protoc --plugin=protoc-gen-go="${BIN}/protoc-gen-go" \
  -I "${DIR}" -I /usr/include \
  --go_out="${DIR}" --go_opt=paths=source_relative \
  "${DIR}/agent.proto"
echo "protobench: $(protoc --version), protoc-gen-go $("${BIN}/protoc-gen-go" --version | awk '{print $2}')"
