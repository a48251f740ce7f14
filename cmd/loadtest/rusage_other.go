//go:build !unix

package main

// rusage is unavailable here: CPU and RSS figures read as zero.
func rusage() (cpu float64, maxRSS int64) { return 0, 0 }
