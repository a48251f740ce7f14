package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// countConns counts the connections srv accepts into n.
func countConns(srv *httptest.Server, n *atomic.Int64) {
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
}

func TestNewReusesConnectionsUnderConcurrency(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	countConns(srv, &conns)
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

// Over TLS the transport negotiates HTTP/2 where the server offers it (as
// Go's default does), so concurrent streams to Ark share a connection
// instead of one each.
func TestHTTP2OverTLS(t *testing.T) {
	var conns atomic.Int64
	release := make(chan struct{})
	var inFlight sync.WaitGroup
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, r.Proto, http.StatusHTTPVersionNotSupported)
			return
		}
		if r.URL.Path == "/warm" {
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.(http.Flusher).Flush()
		inFlight.Done()
		<-release // a stream held open, as an answer is
	}))
	srv.EnableHTTP2 = true
	countConns(srv, &conns)
	srv.StartTLS()
	defer srv.Close()
	tr := New(50)
	tr.TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	// One request first, as a bot's first answer is: requests racing to a
	// host not yet connected may each dial before HTTP/2 is known.
	resp, err := c.Get(srv.URL + "/warm")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("negotiated %s", resp.Proto)
	}
	const streams = 40
	inFlight.Add(streams)
	var wg sync.WaitGroup
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get(srv.URL + "/stream")
			if err != nil {
				t.Error(err)
				inFlight.Done()
				return
			}
			defer resp.Body.Close()
			if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK {
				t.Errorf("%s %d", resp.Proto, resp.StatusCode)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
		}()
	}
	inFlight.Wait() // all 40 streams open at once
	close(release)
	wg.Wait()
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d streams took %d connections", streams, n)
	}
}

// The connect timeout ends a dial that would wait forever, and the error
// says which address and that the timeout ended it.
func TestConnectTimeout(t *testing.T) {
	var dials atomic.Int64
	tr := New(2, WithConnectTimeout(20*time.Millisecond), WithDialContext(func(ctx context.Context, _, _ string) (net.Conn, error) {
		dials.Add(1)
		<-ctx.Done() // a black-holed address
		return nil, ctx.Err()
	}))
	_, err := (&http.Client{Transport: tr}).Get("http://127.0.0.1:9/")
	var ce *ConnectError
	if !errors.As(err, &ce) || ce.Addr != "127.0.0.1:9" || ce.Limit != 20*time.Millisecond {
		t.Fatalf("%v (%T)", err, err)
	}
	var ue *url.Error
	if !errors.As(err, &ue) || !ue.Timeout() {
		t.Errorf("url.Error %v does not report a timeout", err)
	}
	if !strings.Contains(err.Error(), "connect to 127.0.0.1:9: no connection within 20ms") || dials.Load() != 1 {
		t.Errorf("%v after %d dials", err, dials.Load())
	}
}

// A refused connection is a ConnectError without the timeout; a request
// cancelled while connecting is not the connect timeout's doing.
func TestConnectErrorCauses(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = (&http.Client{Transport: New(2, WithConnectTimeout(time.Minute))}).Get("http://" + addr + "/")
	var ce *ConnectError
	if !errors.As(err, &ce) || ce.Addr != addr || ce.Limit != 0 || ce.Timeout() || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("refused: %v (%+v)", err, ce)
	}

	tr := New(2, WithConnectTimeout(time.Minute), WithDialContext(func(ctx context.Context, _, _ string) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:9/", nil)
	_, err = (&http.Client{Transport: tr}).Do(req)
	if !errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ce) && ce.Limit != 0 {
		t.Errorf("cancelled: %v", err)
	}
}
