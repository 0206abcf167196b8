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

package tlsutil

import (
	"fmt"
	"os"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// FileSource reads credentials from PEM files and reads them again when
// one of them changes (a Secret or cert-manager volume updated in place,
// files replaced by hand), at the next handshake after the change: no
// restart is needed to rotate them. A change that does not parse is
// logged and the credentials read before stay in use.
type FileSource struct {
	certFile, keyFile, caFile string

	mu      sync.Mutex
	stamp   string
	creds   *Credentials
	lastErr string
}

// NewFileSource returns the source of certFile, keyFile and caFile, and
// fails unless they can be read now.
func NewFileSource(certFile, keyFile, caFile string) (*FileSource, error) {
	s := &FileSource{certFile: certFile, keyFile: keyFile, caFile: caFile}
	if _, err := s.Current(); err != nil {
		return nil, err
	}
	return s, nil
}

// Current implements Source.
func (s *FileSource) Current() (*Credentials, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	stamp := s.stampOf()
	if s.creds != nil && stamp == s.stamp {
		return s.creds, nil
	}
	creds, err := s.read()
	if err != nil {
		if s.creds == nil {
			return nil, err
		}
		if err.Error() != s.lastErr {
			klog.ErrorS(err, "Keeping the certificates read before: the files changed but do not load",
				"certFile", s.certFile, "caFile", s.caFile)
			s.lastErr = err.Error()
		}
		return s.creds, nil
	}
	if s.creds != nil {
		klog.InfoS("Reloaded certificates", "certFile", s.certFile, "caFile", s.caFile,
			"subject", creds.Certificate.Leaf.Subject.CommonName, "notAfter", creds.Certificate.Leaf.NotAfter)
	}
	s.stamp, s.creds, s.lastErr = stamp, creds, ""
	return creds, nil
}

func (s *FileSource) read() (*Credentials, error) {
	certPEM, err := os.ReadFile(s.certFile)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(s.keyFile)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	caPEM, err := os.ReadFile(s.caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA bundle: %w", err)
	}
	creds, err := NewCredentials(certPEM, keyPEM, caPEM)
	if err != nil {
		return nil, fmt.Errorf("%s, %s, %s: %w", s.certFile, s.keyFile, s.caFile, err)
	}
	return creds, nil
}

// stampOf identifies the files' contents by size and modification time;
// Secret volumes swap a symlink, which changes both.
func (s *FileSource) stampOf() string {
	var stamp string
	for _, f := range []string{s.certFile, s.keyFile, s.caFile} {
		fi, err := os.Stat(f)
		if err != nil {
			stamp += "missing;"
			continue
		}
		stamp += fmt.Sprintf("%d@%s;", fi.Size(), fi.ModTime().Format(time.RFC3339Nano))
	}
	return stamp
}
