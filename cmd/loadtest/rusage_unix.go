//go:build unix

package main

import (
	"runtime"
	"syscall"
)

// rusage returns this process's CPU time (user + system, seconds) and peak
// resident set size (bytes), from getrusage.
func rusage() (cpu float64, maxRSS int64) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0, 0
	}
	cpu = float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	maxRSS = int64(ru.Maxrss)
	if runtime.GOOS != "darwin" {
		maxRSS *= 1024 // kilobytes everywhere but macOS
	}
	return cpu, maxRSS
}
