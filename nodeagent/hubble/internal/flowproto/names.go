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

package flowproto

import "k8s.io/apimachinery/pkg/api/validate/content"

// The checks of names and labels below are apimachinery's content package
// with a fast path: its regular expressions cost more than the rest of an
// export line's parsing. Each fast check accepts only what its regular
// expression accepts, and anything it does not accept goes to content, whose
// answer (and message) is the one returned; TestNameChecks compares the two.

// IsDNS1123Label is content.IsDNS1123Label.
func IsDNS1123Label(s string) []string {
	if len(s) <= content.DNS1123LabelMaxLength && dns1123Label(s) {
		return nil
	}
	return content.IsDNS1123Label(s)
}

// IsDNS1123Subdomain is content.IsDNS1123Subdomain.
func IsDNS1123Subdomain(s string) []string {
	if len(s) <= content.DNS1123SubdomainMaxLength && dns1123Subdomain(s) {
		return nil
	}
	return content.IsDNS1123Subdomain(s)
}

// IsLabelKey is content.IsLabelKey.
func IsLabelKey(s string) []string {
	name := s
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			prefix := s[:i]
			name = s[i+1:]
			if len(prefix) == 0 || len(prefix) > content.DNS1123SubdomainMaxLength || !dns1123Subdomain(prefix) {
				return content.IsLabelKey(s)
			}
			break
		}
	}
	if len(name) > 0 && len(name) <= 63 && qualifiedName(name) {
		return nil
	}
	return content.IsLabelKey(s)
}

// IsLabelValue is content.IsLabelValue.
func IsLabelValue(s string) []string {
	if s == "" || len(s) <= content.LabelValueMaxLength && qualifiedName(s) {
		return nil
	}
	return content.IsLabelValue(s)
}

func lowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func alnum(c byte) bool { return lowerAlnum(c) || c >= 'A' && c <= 'Z' }

// dns1123Label matches [a-z0-9]([-a-z0-9]*[a-z0-9])?.
func dns1123Label(s string) bool {
	if s == "" || !lowerAlnum(s[0]) || !lowerAlnum(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if !lowerAlnum(s[i]) && s[i] != '-' {
			return false
		}
	}
	return true
}

// dns1123Subdomain matches dns1123Label(\.dns1123Label)*.
func dns1123Subdomain(s string) bool {
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if !dns1123Label(s[start:i]) {
				return false
			}
			start = i + 1
		}
	}
	return true
}

// qualifiedName matches ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9].
func qualifiedName(s string) bool {
	if s == "" || !alnum(s[0]) || !alnum(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if c := s[i]; !alnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}
