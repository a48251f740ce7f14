package transport

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
)

func TestNewReusesConnectionsUnderConcurrency(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	tr := New(50)
	defer tr.CloseIdleConnections()
	if tr.MaxIdleConnsPerHost != 50 || tr.Proxy == nil {
		t.Fatalf("transport %+v", tr)
	}
	c := &http.Client{Transport: tr}
	for round := 0; round < 5; round++ {
		var wg sync.WaitGroup
		for i := 0; i < 40; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := c.Get(srv.URL)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
			}()
		}
		wg.Wait()
	}
	// 200 requests, at most 40 at a time: the idle pool keeps them all.
	if n := conns.Load(); n > 40 {
		t.Errorf("%d connections for 200 requests 40 at a time", n)
	}
}
