package conversation

import (
	"testing"

	"github.com/arkbot/arkbot/internal/testing/redistest"
)

// TestMain reports the tests that skipped for want of Redis (see
// redistest.Main); run as the replica a test kills, it is that replica.
func TestMain(m *testing.M) {
	doomedReplicaMain()
	redistest.Main(m)
}
