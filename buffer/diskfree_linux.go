package buffer

import "syscall"

// diskFree reports the bytes an unprivileged writer may still use on the
// filesystem holding dir (statfs f_bavail, which excludes the blocks
// reserved for root: redwire should stop before the system does).
func diskFree(dir string) (free int64, known bool, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false, err
	}
	return int64(st.Bavail) * int64(st.Bsize), true, nil
}
