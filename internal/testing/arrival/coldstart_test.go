package arrival

import (
	"testing"
	"time"
)

// TestStampedFromFirstByte: Linux switches its receive stamping on through
// a deferred work item, and off again when the last socket asking for it
// closes; without Stamped's listener holding it on, about half of new
// listeners' first reads went unstamped here. Each listener Listen returns
// stamps its first read where the system stamps at all.
func TestStampedFromFirstByte(t *testing.T) {
	if !Stamped() {
		t.Skip("SKIPPED LOUDLY: this system gives no receive timestamps on TCP reads")
	}
	for i := range 30 {
		l, err := Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ok := stampedRead(l)
		l.Close()
		if !ok {
			t.Fatalf("listener %d: its first read was not stamped", i)
		}
		time.Sleep(20 * time.Millisecond) // time for the kernel to switch stamping off, were nothing holding it
	}
}
