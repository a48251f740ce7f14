package arkclient

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/volcengine/volcengine-go-sdk/service/arkruntime"
	"github.com/volcengine/volcengine-go-sdk/service/arkruntime/model"

	"github.com/arkbot/arkbot/internal/transport"
	"github.com/arkbot/arkbot/metrics"
)

// Codes of failures around a picture that Ark did not name itself.
const (
	// CodeDownloadFailed: the picture Ark made could not be fetched from
	// its result URL (an error status, too large, too slow, not an image).
	CodeDownloadFailed = "DownloadFailed"
	// CodeNoImage: Ark answered without a picture and without an error.
	CodeNoImage = "NoImage"
)

// Image defaults: how long Ark may take to make the pictures, how long a
// result download may take, and how large one picture may be.
const (
	DefaultImageTimeout    = 3 * time.Minute
	DefaultDownloadTimeout = 30 * time.Second
	DefaultMaxImageBytes   = 20 << 20
)

// maxSequential is the most pictures Ark makes for one request.
const maxSequential = 15

// Images makes pictures with Ark's image models (Seedream) through the
// official SDK's POST {base}/images/generations, then fetches each result
// from its temporary URL, or decodes it when Ark sends it inline
// (b64_json). It is safe for concurrent use.
type Images struct {
	sdk      *arkruntime.Client
	base     string
	addr     string // host:port of base, for connect errors
	apiKey   string
	fetch    *http.Client
	timeout  time.Duration
	download time.Duration
	maxBytes int64
	b64      bool
	connect  time.Duration
}

// ImageOption configures Images.
type ImageOption func(*Images)

// WithImageTimeout bounds one generation request (default
// DefaultImageTimeout).
func WithImageTimeout(d time.Duration) ImageOption {
	return func(c *Images) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// WithDownloadTimeout bounds the download of one result (default
// DefaultDownloadTimeout).
func WithDownloadTimeout(d time.Duration) ImageOption {
	return func(c *Images) {
		if d > 0 {
			c.download = d
		}
	}
}

// WithMaxImageBytes caps one picture's size, downloaded or inline
// (default DefaultMaxImageBytes).
func WithMaxImageBytes(n int64) ImageOption {
	return func(c *Images) {
		if n > 0 {
			c.maxBytes = n
		}
	}
}

// WithBase64 asks Ark for the pictures inline (response_format b64_json)
// instead of as URLs to download.
func WithBase64(on bool) ImageOption { return func(c *Images) { c.b64 = on } }

// WithImagesConnectTimeout bounds each attempt to open a connection, to
// Ark and to the result URLs' host.
func WithImagesConnectTimeout(d time.Duration) ImageOption {
	return func(c *Images) { c.connect = d }
}

// NewImages returns an images client for the API address (the same as
// New's: ".../api/v3", or an exact chat completions URL ending in "#",
// whose "/chat/completions" is dropped) and API key, which the SDK
// requires.
func NewImages(address, apiKey string, opts ...ImageOption) (*Images, error) {
	chat, _, err := resolve(address)
	if err != nil {
		return nil, err
	}
	if apiKey == "" {
		return nil, errors.New("arkclient: pictures need an Ark API key")
	}
	base := strings.TrimSuffix(chat, chatSuffix)
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("arkclient: API address: %w", err)
	}
	c := &Images{base: base, addr: hostPort(u), apiKey: apiKey,
		timeout: DefaultImageTimeout, download: DefaultDownloadTimeout, maxBytes: DefaultMaxImageBytes}
	for _, o := range opts {
		o(c)
	}
	tr := transport.New(8, transport.WithConnectTimeout(c.connect))
	c.sdk = arkruntime.NewClientWithApiKey(apiKey, arkruntime.WithBaseUrl(base), arkruntime.WithRetryTimes(0),
		arkruntime.WithHTTPClient(&http.Client{Transport: capped{tr}}))
	// The result URLs are someone else's: no key, no cookies, a transport
	// of their own.
	c.fetch = &http.Client{Transport: transport.New(4, transport.WithConnectTimeout(c.connect))}
	return c, nil
}

// URL returns the images endpoint the client posts to.
func (c *Images) URL() string { return c.base + "/images/generations" }

// ImageRequest is one request for pictures.
type ImageRequest struct {
	Model  string   // Ark image model ID or endpoint ID
	Prompt string   // what to draw, or how to change Images
	Images []string // pictures to edit (https or data: URLs); none makes a new one
	Size   string   // "2K", "2048x2048", "adaptive"…; "" is the model's default
	// Watermark asks Ark to mark the pictures as AI-made.
	Watermark bool
	// MaxImages > 1 lets the model make up to that many related pictures
	// (sequential generation, at most 15).
	MaxImages int
}

// Picture is one picture made.
type Picture struct {
	Data        []byte
	ContentType string // sniffed: image/png, image/jpeg…
	Size        string // "WxH", as Ark reports it
	URL         string // Ark's temporary result URL (valid about a day); "" when sent inline
}

// ImageResult is what one request made.
type ImageResult struct {
	Pictures []Picture
	// Failed counts pictures Ark reports without a result (each failed on
	// its own, e.g. moderation of one of several).
	Failed int
}

// Generate asks Ark for pictures and fetches them. Errors are *Error,
// classified like chat errors: moderation of the prompt, of an input
// picture or of the result (the *SensitiveContentDetected codes), a
// model not activated (ModelNotOpen), quota, and so on; a failed
// download is CodeDownloadFailed. A picture is never larger than the
// size cap, and no step outlasts its timeout.
func (c *Images) Generate(ctx context.Context, req ImageRequest) (*ImageResult, error) {
	if ctx.Err() != nil {
		return nil, canceledError(ctx.Err(), false)
	}
	n := min(max(req.MaxImages, 1), maxSequential)
	sreq := model.GenerateImagesRequest{Model: req.Model, Prompt: req.Prompt, Watermark: &req.Watermark}
	switch len(req.Images) {
	case 0:
	case 1:
		sreq.Image = req.Images[0]
	default:
		sreq.Image = req.Images
	}
	if req.Size != "" {
		sreq.Size = &req.Size
	}
	format, limit := model.GenerateImagesResponseFormatURL, int64(maxErrorBody)
	if c.b64 {
		format, limit = model.GenerateImagesResponseFormatBase64, int64(n)*(c.maxBytes/3*4+4)+maxErrorBody
	}
	sreq.ResponseFormat = &format
	seq := model.SequentialImageGeneration("disabled")
	if n > 1 {
		seq = "auto"
		sreq.SequentialImageGenerationOptions = &model.SequentialImageGenerationOptions{MaxImages: &n}
	}
	sreq.SequentialImageGeneration = &seq

	gctx, cancel := context.WithTimeout(withBodyCap(ctx, limit), c.timeout)
	defer cancel()
	resp, err := c.sdk.GenerateImages(gctx, sreq)
	if err != nil {
		return nil, c.fail(ctx, gctx, err, resp.Header())
	}
	if resp.Error != nil && resp.Error.Code != "" {
		return nil, c.newError(http.StatusOK, resp.Error.Code, resp.Error.Message, resp.Header(), nil)
	}
	res := &ImageResult{Pictures: make([]Picture, 0, len(resp.Data))}
	var urls []int
	for _, d := range resp.Data {
		switch {
		case d == nil:
			res.Failed++
		case d.B64Json != nil && *d.B64Json != "":
			p, err := c.decode(*d.B64Json)
			if err != nil {
				return nil, err
			}
			p.Size = d.Size
			res.Pictures = append(res.Pictures, p)
		case d.Url != nil && *d.Url != "":
			urls = append(urls, len(res.Pictures))
			res.Pictures = append(res.Pictures, Picture{URL: *d.Url, Size: d.Size})
		default:
			res.Failed++
		}
	}
	if err := c.fetchAll(ctx, res.Pictures, urls); err != nil {
		return nil, err
	}
	if len(res.Pictures) == 0 {
		e := c.newError(http.StatusOK, CodeNoImage, "the answer held no picture", resp.Header(), nil)
		e.user = "Ark made no picture this time (it gave no reason). Please try again, perhaps with another prompt."
		return nil, e
	}
	return res, nil
}

// fetchAll downloads the pictures at indexes idx of ps at once; the
// first error wins.
func (c *Images) fetchAll(ctx context.Context, ps []Picture, idx []int) error {
	errs := make([]error, len(idx))
	var wg sync.WaitGroup
	for i, j := range idx {
		wg.Go(func() {
			ps[j].Data, ps[j].ContentType, errs[i] = c.get(ctx, ps[j].URL)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// get downloads one result: http(s) only, within the download timeout,
// at most maxBytes, and it must be a picture.
func (c *Images) get(ctx context.Context, raw string) ([]byte, string, error) {
	fail := func(why string, cause error) ([]byte, string, error) {
		if ctx.Err() != nil {
			return nil, "", canceledError(ctx.Err(), false)
		}
		e := c.newError(0, CodeDownloadFailed, why, nil, cause)
		e.user = "Ark made the picture, but I couldn't download it (" + why + "). Please try again."
		return nil, "", e
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fail("its address is not an http(s) URL", err)
	}
	dctx, cancel := context.WithTimeout(ctx, c.download)
	defer cancel()
	hreq, err := http.NewRequestWithContext(dctx, http.MethodGet, raw, nil)
	if err != nil {
		return fail("its address is not usable", err)
	}
	resp, err := c.fetch.Do(hreq)
	if err != nil {
		if dctx.Err() != nil && ctx.Err() == nil {
			return fail(fmt.Sprintf("no picture within %s", c.download), err)
		}
		return fail("the download failed", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail(fmt.Sprintf("HTTP %d from the picture's host", resp.StatusCode), nil)
	}
	if resp.ContentLength > c.maxBytes {
		return fail(fmt.Sprintf("larger than %s", byteSize(c.maxBytes)), nil)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBytes+1))
	switch {
	case err != nil && dctx.Err() != nil && ctx.Err() == nil:
		return fail(fmt.Sprintf("no complete picture within %s", c.download), err)
	case err != nil:
		return fail("the download broke off", err)
	case int64(len(data)) > c.maxBytes:
		return fail(fmt.Sprintf("larger than %s", byteSize(c.maxBytes)), nil)
	}
	ct := http.DetectContentType(data)
	if !strings.HasPrefix(ct, "image/") {
		return fail("what came back is not a picture", nil)
	}
	return data, ct, nil
}

// decode reads an inline (b64_json) picture, within the size cap.
func (c *Images) decode(b64 string) (Picture, error) {
	if int64(base64.StdEncoding.DecodedLen(len(b64))) > c.maxBytes+2 {
		e := c.newError(0, CodeDownloadFailed, "inline picture too large", nil, nil)
		e.user = fmt.Sprintf("Ark made a picture larger than %s, so I can't post it.", byteSize(c.maxBytes))
		return Picture{}, e
	}
	data, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || !strings.HasPrefix(http.DetectContentType(data), "image/") {
		e := c.newError(0, CodeStreamInterrupted, "inline picture is not valid base64 image data", nil, err)
		e.user = "Ark sent a picture I couldn't read. Please try again."
		return Picture{}, e
	}
	return Picture{Data: data, ContentType: http.DetectContentType(data)}, nil
}

// fail turns the SDK's error into an *Error: Ark's own code when its body
// named one, else a network, timeout or cancellation error.
func (c *Images) fail(ctx, gctx context.Context, err error, header http.Header) *Error {
	var apiErr *model.APIError
	var reqErr *model.RequestError
	var urlErr *url.Error
	switch {
	case ctx.Err() != nil:
		return canceledError(ctx.Err(), false)
	case errors.As(err, &apiErr):
		code := apiErr.Code
		if code == "" {
			code = fmt.Sprintf("HTTP%d", apiErr.HTTPStatusCode)
		}
		return c.newError(apiErr.HTTPStatusCode, code, apiErr.Message, header, nil)
	case gctx.Err() != nil:
		return c.newError(0, CodeTimeout, fmt.Sprintf("no picture from Ark within %s", c.timeout), nil, err)
	case errors.As(err, &urlErr):
		var connErr *transport.ConnectError
		if errors.As(err, &connErr) {
			e := c.newError(0, CodeConnectFailed, err.Error(), nil, err)
			e.user = connectText(c.addr, connErr)
			return e
		}
		if cert := tlsCertificateError(err); cert != nil {
			e := c.newError(0, CodeTLSCertificate, err.Error(), nil, err)
			e.user = tlsText(c.addr, cert)
			return e
		}
		return c.newError(0, CodeNetworkError, err.Error(), header, err)
	case errors.Is(err, errBodyTooLarge):
		e := c.newError(0, CodeStreamInterrupted, err.Error(), header, err)
		e.user = fmt.Sprintf("Ark's answer was larger than pictures of %s allow, so I dropped it. Please try again.", byteSize(c.maxBytes))
		return e
	case errors.As(err, &reqErr) && reqErr.HTTPStatusCode >= 400:
		return c.newError(reqErr.HTTPStatusCode, fmt.Sprintf("HTTP%d", reqErr.HTTPStatusCode), err.Error(), header, err)
	case errors.As(err, &reqErr):
		return c.newError(0, CodeStreamInterrupted, "reading Ark's answer: "+err.Error(), header, err)
	}
	return c.newError(0, CodeInvalidRequest, err.Error(), nil, err)
}

// newError builds an *Error, redacts the API key, counts it, and words
// moderation for pictures: which of the prompt, the input picture or the
// result was blocked.
func (c *Images) newError(status int, code, message string, header http.Header, cause error) *Error {
	message = strings.ReplaceAll(message, c.apiKey, "[redacted]")
	e := newError(status, code, message, header, cause)
	metrics.ArkErrors.WithLabelValues(e.Code).Inc()
	if classify(status, code) == kindModeration {
		switch {
		case strings.Contains(code, "Output"):
			e.user = "Ark's content moderation blocked the picture it made. Please change the prompt."
		case strings.Contains(code, "InputImage"):
			e.user = "Ark's content moderation blocked the picture given to edit."
		default:
			e.user = "Ark's content moderation blocked this prompt. Please rephrase it."
		}
	}
	return e
}

// Moderated reports whether e is a content moderation refusal.
func (e *Error) Moderated() bool { return classify(e.Status, e.Code) == kindModeration }

// byteSize writes n bytes as "20 MiB" or "512 KiB".
func byteSize(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", (n+1023)>>10)
}

// bodyCapKey carries the response body cap of an SDK request.
type bodyCapKey struct{}

func withBodyCap(ctx context.Context, n int64) context.Context {
	return context.WithValue(ctx, bodyCapKey{}, n)
}

// errBodyTooLarge ends reading an answer longer than its cap.
var errBodyTooLarge = errors.New("the answer from Ark is larger than expected")

// capped is the SDK's transport: it caps each response body at the
// request context's body cap, since the SDK reads bodies whole.
type capped struct{ rt http.RoundTripper }

func (c capped) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if n, ok := req.Context().Value(bodyCapKey{}).(int64); ok {
		resp.Body = &cappedBody{rc: resp.Body, left: n}
	}
	return resp, nil
}

// cappedBody fails with errBodyTooLarge past its cap.
type cappedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errBodyTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *cappedBody) Close() error { return b.rc.Close() }

// The SDK's constructor builds a volcengine session whose configuration
// falls back to http.DefaultClient: it sets that client's Transport (a
// clone of http.DefaultTransport) when there is none, and writes the
// transport's Proxy on every call, racing with requests in flight on
// http.DefaultClient and dropping NO_PROXY. Giving http.DefaultClient, at
// start-up, a transport that is no *http.Transport but hands every request
// to http.DefaultTransport leaves the SDK nothing to write, and changes
// nothing else about http.DefaultClient.
func init() {
	if http.DefaultClient.Transport == nil {
		http.DefaultClient.Transport = viaDefaultTransport{}
	}
}

// viaDefaultTransport sends requests with http.DefaultTransport.
type viaDefaultTransport struct{}

func (viaDefaultTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return http.DefaultTransport.RoundTrip(r)
}
