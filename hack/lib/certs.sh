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

# Certificate helpers for the local system (sourced). Keys are ECDSA P-256
# except where a caller asks for RSA. Everything is created once and reused:
# a CA is regenerated only when missing or expiring within a day, and a leaf
# certificate also when it no longer verifies against its CA (so a new CA
# re-issues its leaves) or carries other subject alternative names than
# asked for (so a new name, such as an agent's node, re-issues it).

CERT_CA_DAYS=3650
CERT_LEAF_DAYS=825

# certs::_valid CRT: exists and does not expire within a day.
certs::_valid() {
  [[ -s "$1" ]] && openssl x509 -in "$1" -noout -checkend 86400 >/dev/null 2>&1
}

# certs::_sans SAN: the names of SAN ("DNS:localhost, IP:127.0.0.1"), one
# per line, sorted, as openssl prints them ("IP Address:127.0.0.1").
certs::_sans() {
  local names name
  IFS=, read -ra names <<<"$1"
  for name in "${names[@]}"; do
    name="${name// /}"
    [[ -n "${name}" ]] && printf '%s\n' "${name/#IP:/IPAddress:}"
  done | sort
}

# certs::_has_sans CRT SAN: CRT carries exactly the names of SAN.
certs::_has_sans() {
  local have
  have="$(openssl x509 -in "$1" -noout -ext subjectAltName 2>/dev/null | tail -n +2)"
  [[ "$(certs::_sans "${have}")" == "$(certs::_sans "$2")" ]]
}

# certs::key FILE [rsa]: creates a private key (PKCS#8 PEM) when missing.
certs::key() {
  local file=$1 kind=${2:-ec}
  [[ -s "${file}" ]] && return 0
  if [[ "${kind}" == rsa ]]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "${file}" 2>/dev/null
  else
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "${file}" 2>/dev/null
  fi
  chmod 600 "${file}"
}

# certs::_config CN EXTENSIONS...: writes an openssl config to stdout.
certs::_config() {
  local cn=$1 ext
  shift
  printf '[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = %s\n[ext]\n' "${cn}"
  for ext in "$@"; do
    printf '%s\n' "${ext}"
  done
}

# certs::ca DIR NAME CN: DIR/NAME.crt and DIR/NAME.key, a self-signed CA.
certs::ca() {
  local dir=$1 name=$2 cn=$3 cfg
  certs::_valid "${dir}/${name}.crt" && [[ -s "${dir}/${name}.key" ]] && return 0
  rm -f "${dir}/${name}.key"
  certs::key "${dir}/${name}.key"
  cfg="$(mktemp)"
  certs::_config "${cn}" \
    'basicConstraints = critical, CA:TRUE' \
    'keyUsage = critical, keyCertSign, cRLSign, digitalSignature' \
    'subjectKeyIdentifier = hash' >"${cfg}"
  openssl req -x509 -new -key "${dir}/${name}.key" -config "${cfg}" -extensions ext \
    -days "${CERT_CA_DAYS}" -sha256 -out "${dir}/${name}.crt" 2>/dev/null
  rm -f "${cfg}"
}

# certs::leaf DIR CA NAME CN EKU [SAN]: DIR/NAME.{crt,key} signed by DIR/CA.{crt,key}.
# EKU is serverAuth, clientAuth or "serverAuth, clientAuth"; SAN like
# "DNS:localhost, IP:127.0.0.1".
certs::leaf() {
  local dir=$1 ca=$2 name=$3 cn=$4 eku=$5 san=${6:-} cfg csr
  local crt="${dir}/${name}.crt" key="${dir}/${name}.key"
  if certs::_valid "${crt}" && [[ -s "${key}" ]] &&
    openssl verify -CAfile "${dir}/${ca}.crt" "${crt}" >/dev/null 2>&1 &&
    certs::_has_sans "${crt}" "${san}"; then
    return 0
  fi
  certs::key "${key}"
  cfg="$(mktemp)"
  csr="$(mktemp)"
  local exts=(
    'basicConstraints = critical, CA:FALSE'
    'keyUsage = critical, digitalSignature, keyEncipherment'
    "extendedKeyUsage = ${eku}"
    'subjectKeyIdentifier = hash'
    'authorityKeyIdentifier = keyid'
  )
  [[ -n "${san}" ]] && exts+=("subjectAltName = ${san}")
  certs::_config "${cn}" "${exts[@]}" >"${cfg}"
  openssl req -new -key "${key}" -config "${cfg}" -out "${csr}" 2>/dev/null
  openssl x509 -req -in "${csr}" -CA "${dir}/${ca}.crt" -CAkey "${dir}/${ca}.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days "${CERT_LEAF_DAYS}" -sha256 \
    -extfile "${cfg}" -extensions ext -out "${crt}" 2>/dev/null
  rm -f "${cfg}" "${csr}"
}
