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

	"github.com/arkbot/arkbot/internal/arrival"
)

// TestTimeIsArrival pipelines two requests in one write to a server whose
// first handler takes 100 ms: the second handler runs 100 ms after its
// request arrived, and Time says when it arrived. A third request, sent
// after a pause on the same connection, gets its own later stamp.
func TestTimeIsArrival(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("kernel receive timestamps are read on Linux only")
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

// TestWithoutStamps: a connection from a plain listener has no stamps, and
// Time is the moment of asking.
func TestWithoutStamps(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	type seen struct{ before, arrived time.Time }
	got := make(chan seen, 1)
	srv := &http.Server{ConnContext: arrival.ConnContext, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		before := time.Now()
		got <- seen{before, arrival.Time(r)}
	})}
	go srv.Serve(l)
	defer srv.Close()
	resp, err := http.Post("http://"+l.Addr().String()+"/", "text/plain", strings.NewReader("hi"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if g := <-got; g.arrived.Before(g.before) {
		t.Errorf("Time = %v before the handler asked at %v", g.arrived, g.before)
	}
}
