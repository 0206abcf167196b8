//go:build !unix

package follow

import "os"

// fileIdentity has no portable answer here; checkpoints then rely on the
// fingerprint alone.
func fileIdentity(os.FileInfo) (dev, ino uint64) { return 0, 0 }
