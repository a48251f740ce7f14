//go:build unix

package main

import (
	"runtime"
	"syscall"
)

// rusage returns this process's resource use so far, from getrusage.
func rusage() usage {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return usage{}
	}
	u := usage{CPU: float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9, SysCPU: float64(ru.Stime.Nano()) / 1e9,
		MaxRSS: int64(ru.Maxrss), Faults: int64(ru.Minflt + ru.Majflt)}
	if runtime.GOOS != "darwin" {
		u.MaxRSS *= 1024 // kilobytes everywhere but macOS
	}
	return u
}
