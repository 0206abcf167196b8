//go:build unix

package follow

import (
	"os"
	"syscall"
)

// fileIdentity returns the device and inode of a file, which name it across
// renames.
func fileIdentity(info os.FileInfo) (dev, ino uint64) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0
	}
	return uint64(st.Dev), st.Ino
}
