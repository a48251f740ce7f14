package arrival_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arkbot/arkbot/internal/testing/arrival"
)

// TestTimeIsArrival pipelines two requests in one write to a server whose
// first handler takes 100 ms: the second handler runs 100 ms after its
// request arrived, and Time says when it arrived. A third request, sent
// after a pause on the same connection, gets its own later stamp.
func TestTimeIsArrival(t *testing.T) {
	if !arrival.Stamped() {
		t.Skipf("SKIPPED LOUDLY: this kernel (%s) gives no receive timestamps on TCP reads; the load test's fakes stamp calls by their handlers' clock here", runtime.GOOS)
	}
	type seen struct{ arrived, handled time.Time }
	var mu sync.Mutex
	got := map[string]seen{}
	l, err := arrival.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ConnContext: arrival.ConnContext, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived, handled := arrival.Time(r), time.Now()
		mu.Lock()
		got[r.URL.Path] = seen{arrived, handled}
		mu.Unlock()
		if r.URL.Path == "/slow" {
			time.Sleep(100 * time.Millisecond)
		}
		io.WriteString(w, "ok")
	})}
	go srv.Serve(l)
	defer srv.Close()

	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := func(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n" }
	sent := time.Now()
	if _, err := io.WriteString(c, req("/slow")+req("/queued")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	readResponse := func() {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	readResponse()
	readResponse()
	time.Sleep(50 * time.Millisecond)
	third := time.Now()
	if _, err := io.WriteString(c, req("/later")); err != nil {
		t.Fatal(err)
	}
	readResponse()

	mu.Lock()
	defer mu.Unlock()
	q, later := got["/queued"], got["/later"]
	if d := q.arrived.Sub(sent); d < 0 || d > 50*time.Millisecond {
		t.Errorf("queued request arrived %v after it was sent; want at once", d)
	}
	if d := q.handled.Sub(q.arrived); d < 90*time.Millisecond {
		t.Errorf("queued request handled %v after it arrived; want the slow handler's 100 ms", d)
	}
	if later.arrived.Before(third) || later.handled.Before(later.arrived) {
		t.Errorf("later request: sent %v, arrived %v, handled %v; want a fresh stamp between", third, later.arrived, later.handled)
	}
}

// TestStampedOrNow: Time is before the handler runs where the system stamps
// reads of Listen's connections, and the moment of asking where it does not
// or the listener is a plain one.
func TestStampedOrNow(t *testing.T) {
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stamping, err := arrival.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		l       net.Listener
		stamped bool
	}{{"plain", plain, false}, {"Listen", stamping, arrival.Stamped()}} {
		t.Run(tc.name, func(t *testing.T) {
			type seen struct{ before, arrived time.Time }
			got := make(chan seen, 1)
			srv := &http.Server{ConnContext: arrival.ConnContext, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				before := time.Now()
				got <- seen{before, arrival.Time(r)}
			})}
			go srv.Serve(tc.l)
			defer srv.Close()
			resp, err := http.Post("http://"+tc.l.Addr().String()+"/", "text/plain", strings.NewReader("hi"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if g := <-got; g.arrived.Before(g.before) != tc.stamped {
				t.Errorf("Time = %v, handler asked at %v; want a stamp before it: %v", g.arrived, g.before, tc.stamped)
			}
		})
	}
}
