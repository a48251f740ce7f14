package arkclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arkbot/arkbot/internal/transport"
	"github.com/arkbot/arkbot/metrics"
)

// blackHole is a dialer for an address that never answers: each attempt
// waits until its context ends. It counts the attempts.
type blackHole struct{ dials atomic.Int64 }

func (b *blackHole) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	b.dials.Add(1)
	<-ctx.Done()
	return nil, ctx.Err()
}

// A black-holed Ark fails after the connect timeout, retried once only
// (not max_retries times), and the user learns which address to check.
func TestConnectTimeoutRetriedOnce(t *testing.T) {
	const connect = 50 * time.Millisecond
	var hole blackHole
	c, err := New("http://127.0.0.1:9/api/v3", testKey, WithLogger(quiet), WithRetries(3, time.Millisecond, time.Millisecond),
		WithFirstTokenTimeout(time.Minute), WithConnectTimeout(connect), WithDialContext(hole.dial))
	if err != nil {
		t.Fatal(err)
	}
	before := arkErrors(CodeConnectFailed)
	start := time.Now()
	_, err = c.Stream(context.Background(), userReq("x"))
	took := time.Since(start)
	e := asError(t, err)
	if e.Code != CodeConnectFailed || !e.Retryable || e.Interrupted {
		t.Errorf("%+v", e)
	}
	if n := hole.dials.Load(); n != 2 {
		t.Errorf("%d connection attempts, want 2 (one retry)", n)
	}
	// Two connect timeouts and a backoff of at most 1ms; the bound is loose
	// on purpose: the first-token timeout (a minute) must not be what ended it.
	if took > 20*connect+5*time.Second {
		t.Errorf("took %v with a connect timeout of %v", took, connect)
	}
	want := "I can't connect to Ark at 127.0.0.1:9: no connection within 50ms. "
	if msg := e.UserMessage(); !strings.HasPrefix(msg, want) || !strings.Contains(msg, "ark.base_url") || !strings.Contains(msg, "proxy") {
		t.Errorf("UserMessage %q, want it to start %q and say what to check", msg, want)
	}
	var ce *transport.ConnectError
	if !errors.As(err, &ce) || ce.Limit != connect {
		t.Errorf("cause %v", e.Unwrap())
	}
	if d := arkErrors(CodeConnectFailed) - before; d != 2 {
		t.Errorf("ark_errors{code=ConnectFailed} grew by %v, want 2", d)
	}

	// Without retries, one attempt.
	c, err = New("http://127.0.0.1:9/api/v3", testKey, WithLogger(quiet), WithConnectTimeout(connect), WithDialContext(hole.dial))
	if err != nil {
		t.Fatal(err)
	}
	hole.dials.Store(0)
	if _, err := c.Stream(context.Background(), userReq("x")); asError(t, err).Code != CodeConnectFailed || hole.dials.Load() != 1 {
		t.Errorf("no retries: %v after %d attempts", err, hole.dials.Load())
	}
}

// A refused connection is a connect failure too, named as such.
func TestConnectRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	var dials atomic.Int64
	var d net.Dialer
	c, err := New("http://"+addr+"/api/v3", testKey, WithLogger(quiet), WithRetries(3, time.Millisecond, time.Millisecond),
		WithDialContext(func(ctx context.Context, network, a string) (net.Conn, error) {
			dials.Add(1)
			return d.DialContext(ctx, network, a)
		}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Stream(context.Background(), userReq("x"))
	e := asError(t, err)
	if e.Code != CodeConnectFailed || dials.Load() != 2 {
		t.Errorf("%+v after %d attempts", e, dials.Load())
	}
	if msg := e.UserMessage(); !strings.HasPrefix(msg, "I can't connect to Ark at "+addr+": connection refused. ") {
		t.Errorf("UserMessage %q", msg)
	}
}

// Through a proxy, the address that did not answer is the proxy's, and the
// message says so.
func TestConnectThroughProxy(t *testing.T) {
	var hole blackHole
	tr := transport.New(4, transport.WithConnectTimeout(20*time.Millisecond), transport.WithDialContext(hole.dial))
	tr.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: "127.0.0.1:3128"})
	c, err := New("https://ark.cn-beijing.volces.com/api/v3/", testKey, WithLogger(quiet), WithHTTPClient(&http.Client{Transport: tr}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Stream(context.Background(), userReq("x"))
	e := asError(t, err)
	want := "I can't connect to Ark through the proxy at 127.0.0.1:3128: no connection within 20ms. "
	if e.Code != CodeConnectFailed || !strings.HasPrefix(e.UserMessage(), want) {
		t.Errorf("%+v: %q", e, e.UserMessage())
	}
}

// A caller that gives up while the connection is being opened sees a
// cancellation, not a connect failure.
func TestCancelWhileConnecting(t *testing.T) {
	var hole blackHole
	c, err := New("http://127.0.0.1:9/api/v3", testKey, WithLogger(quiet), WithConnectTimeout(time.Minute), WithDialContext(hole.dial))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = c.Stream(ctx, userReq("x"))
	if e := asError(t, err); e.Code != CodeCanceled {
		t.Errorf("%+v", e)
	}
}

// A certificate the client does not trust is named, with what to do, and
// not retried.
func TestTLSCertificateErrors(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	srv.StartTLS()
	defer srv.Close()
	srvAddr := srv.Listener.Addr().String()

	// Unknown authority: the default transport trusts the system's roots only.
	c := newClient(t, nil, srv.URL+"/api/v3")
	_, err := c.Stream(context.Background(), userReq("x"))
	e := asError(t, err)
	if e.Code != CodeTLSCertificate || e.Retryable || conns.Load() != 1 {
		t.Errorf("%+v after %d connections", e, conns.Load())
	}
	want := "Ark's TLS certificate at " + srvAddr + " could not be verified: it is signed by an unknown authority. A proxy intercepting TLS? Then set SSL_CERT_FILE"
	if !strings.HasPrefix(e.UserMessage(), want) {
		t.Errorf("UserMessage %q, want it to start %q", e.UserMessage(), want)
	}

	// Host name mismatch: the certificate is trusted, but not issued for
	// the name the address gives.
	tr := transport.New(4, transport.WithDialContext(func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, srvAddr)
	}))
	tr.TLSClientConfig = &tls.Config{RootCAs: x509.NewCertPool()}
	tr.TLSClientConfig.RootCAs.AddCert(srv.Certificate())
	tr.Proxy = nil
	c = newClient(t, nil, "https://ark.invalid/api/v3", WithHTTPClient(&http.Client{Transport: tr}))
	_, err = c.Stream(context.Background(), userReq("x"))
	e = asError(t, err)
	if e.Code != CodeTLSCertificate || !strings.Contains(e.UserMessage(), "at ark.invalid:443 could not be verified: it is not valid for ark.invalid.") {
		t.Errorf("%+v: %q", e, e.UserMessage())
	}
}

func TestTLSTextExpired(t *testing.T) {
	got := tlsText("ark.example:443", x509.CertificateInvalidError{Reason: x509.Expired})
	if !strings.Contains(got, "it has expired or is not yet valid") || !strings.Contains(got, "SSL_CERT_FILE") {
		t.Errorf("%q", got)
	}
}

func TestNetworkErrorRetried(t *testing.T) {
	// A server that accepts connections and closes them at once: the
	// connection opens, the request fails.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	c, err := New("http://"+l.Addr().String()+"/api/v3", testKey, WithLogger(quiet), WithRetries(2, time.Millisecond, 5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	retries := counter(metrics.ArkRetries)
	_, err = c.Stream(context.Background(), userReq("x"))
	e := asError(t, err)
	if e.Code != CodeNetworkError || !e.Retryable || e.Interrupted {
		t.Errorf("%+v", e)
	}
	if d := counter(metrics.ArkRetries) - retries; d != 2 {
		t.Errorf("%v retries, want 2", d)
	}
}
