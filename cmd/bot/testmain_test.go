package main

import (
	"testing"

	"github.com/arkbot/arkbot/internal/testing/redistest"
)

// TestMain reports the tests that skipped for want of Redis (see redistest.Main).
func TestMain(m *testing.M) { redistest.Main(m) }
