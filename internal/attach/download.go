package attach

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// DefaultTimeout bounds one download unless WithTimeout says otherwise.
const DefaultTimeout = 30 * time.Second

// ErrTooLarge is a download that went past its limit.
var ErrTooLarge = errors.New("attach: file too large")

// StatusError is a download answered with a status other than 200 OK.
type StatusError struct {
	Code       int
	RetryAfter time.Duration // from a 429's Retry-After header, if any
}

func (e *StatusError) Error() string { return "attach: download answered HTTP " + strconv.Itoa(e.Code) }

// DownloadOption configures Download.
type DownloadOption func(*download)

type download struct {
	timeout  time.Duration
	request  func(*http.Request) error
	response func(*http.Response) error
}

// WithTimeout bounds the whole download (default DefaultTimeout).
func WithTimeout(d time.Duration) DownloadOption { return func(o *download) { o.timeout = d } }

// WithRequest lets f decorate the request (an Authorization header) or
// refuse it with an error before it is sent.
func WithRequest(f func(*http.Request) error) DownloadOption {
	return func(o *download) { o.request = f }
}

// WithResponse lets f refuse a 200 response before its body is read (a
// redirect to a sign-in page).
func WithResponse(f func(*http.Response) error) DownloadOption {
	return func(o *download) { o.response = f }
}

// Download GETs an http(s) URL with client (http.DefaultClient if nil) and
// returns its body: it fails with ErrTooLarge past limit bytes (reading at
// most limit+1), with *StatusError unless the answer is 200 OK, and when
// the timeout passes.
func Download(ctx context.Context, client *http.Client, rawURL string, limit int64, opts ...DownloadOption) ([]byte, error) {
	o := download{timeout: DefaultTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if client == nil {
		client = http.DefaultClient
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errors.New("attach: not an http(s) URL")
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	if o.request != nil {
		if err := o.request(req); err != nil {
			return nil, err
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		se := &StatusError{Code: resp.StatusCode}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			se.RetryAfter = time.Duration(s) * time.Second
		}
		return nil, se
	}
	if o.response != nil {
		if err := o.response(resp); err != nil {
			return nil, err
		}
	}
	if resp.ContentLength > limit {
		return nil, ErrTooLarge
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("attach: reading the download: %w", err)
	}
	if int64(len(data)) > limit {
		return nil, ErrTooLarge
	}
	return data, nil
}
