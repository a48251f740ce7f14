package arkclient

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestClassify covers every code of ARK.md's error table, the wildcard
// families, the synthetic codes and unknown codes by status.
func TestClassify(t *testing.T) {
	cases := []struct {
		status    int
		code      string
		retryable bool
		says      string // a phrase UserMessage must contain
	}{
		{400, "MissingParameter", false, "invalid"},
		{400, "InvalidParameter", false, "invalid"},
		{400, "InvalidParameter.TooManyImages", false, "invalid"},
		{400, "OutofContextError", false, "/reset"},
		{400, "SensitiveContentDetected", false, "moderation"},
		{400, "SensitiveContentDetected.SevereViolation", false, "moderation"},
		{400, "InputTextSensitiveContentDetected", false, "moderation"},
		{400, "OutputImageSensitiveContentDetected", false, "moderation"},
		{400, "InputTextRiskDetection", false, "moderation"},
		{400, "OutputTextRiskDetection", false, "moderation"},
		{401, "AuthenticationError", false, "ARK_API_KEY"},
		{403, "AccountOverdueError", false, "billing or access"},
		{403, "AccessDenied", false, "billing or access"},
		{403, "OperationDenied.ServiceNotOpen", false, "billing or access"},
		{403, "OperationDenied.ServiceOverdue", false, "billing or access"},
		{404, "ModelNotOpen", false, "开通管理"},
		{404, "InvalidEndpointOrModel.NotFound", false, "config.yaml"},
		{404, "InvalidEndpointOrModel.ModelIDAccessDisabled", false, "ep- endpoint ID"},
		{404, "UnsupportedModel", false, "config.yaml"},
		{429, "RateLimitExceeded.EndpointRPMExceeded", true, "rate limit"},
		{429, "RateLimitExceeded.EndpointTPMExceeded", true, "rate limit"},
		{429, "ModelAccountRpmRateLimitExceeded", true, "rate limit"},
		{429, "ModelAccountTpmRateLimitExceeded", true, "rate limit"},
		{429, "RequestBurstTooFast", true, "rate limit"},
		{429, "ServerOverloaded", true, "busy"},
		{429, "InflightBatchsizeExceeded", true, "busy"},
		{429, "QuotaExceeded", false, "quota or spending cap"},
		{429, "SetLimitExceeded", false, "quota or spending cap"},
		{500, "InternalServiceError", true, "temporary"},
		{0, "InternalServiceError", true, "temporary"}, // inside a stream
		{0, CodeTimeout, false, "timeout"},
		{0, CodeStreamInterrupted, true, "connection"},
		{0, CodeNetworkError, true, "could not reach Ark"},
		{0, CodeConnectFailed, true, "I can't connect to Ark. "},
		{0, CodeTLSCertificate, false, "TLS certificate could not be verified"},
		{0, CodeCanceled, false, "cancelled"},
		// Unknown codes fall back on the status.
		{429, "SomethingNew", true, "rate limit"},
		{503, "HTTP503", true, "temporary"},
		{502, "BadGateway", true, "temporary"},
		{401, "HTTP401", false, "ARK_API_KEY"},
		{403, "SomethingForbidden", false, "billing or access"},
		{409, "Conflict", false, "Ark refused the request (Conflict)"},
		{400, "WhoKnows", false, "Ark refused the request (WhoKnows)"},
		{0, "WhoKnows", false, "Ark returned an error (WhoKnows)"},
	}
	for _, c := range cases {
		e := newError(c.status, c.code, "msg", nil, nil)
		if e.Retryable != c.retryable {
			t.Errorf("%d %s: Retryable = %v, want %v", c.status, c.code, e.Retryable, c.retryable)
		}
		if msg := e.UserMessage(); !strings.Contains(msg, c.says) {
			t.Errorf("%d %s: UserMessage %q lacks %q", c.status, c.code, msg, c.says)
		}
	}
}

func TestUserMessageWording(t *testing.T) {
	e := newError(404, "ModelNotOpen", "Your account has not activated the model doubao-x. Request id: 0217abc-def", nil, nil)
	want := "This model is not activated for the bot's Ark account: an operator must enable it in the Ark console under 开通管理 (Activation). (request id: 0217abc-def)"
	if got := e.UserMessage(); got != want {
		t.Errorf("UserMessage = %q\nwant %q", got, want)
	}
	if e.RequestID != "0217abc-def" {
		t.Errorf("RequestID = %q", e.RequestID)
	}
	if got := newError(429, "RateLimitExceeded.EndpointRPMExceeded", "x", nil, nil).UserMessage(); got != "Ark is busy right now (rate limit); please try again in a moment." {
		t.Errorf("rate limit: %q", got)
	}
	interrupted := newError(0, CodeTimeout, "x", nil, nil)
	interrupted.Interrupted = true
	if !strings.Contains(interrupted.UserMessage(), "incomplete") {
		t.Errorf("interrupted timeout: %q", interrupted.UserMessage())
	}
}

func TestErrorString(t *testing.T) {
	e := newError(429, "QuotaExceeded", "quota used up. Request id: r1", nil, nil)
	if got := e.Error(); got != "ark: QuotaExceeded (HTTP 429): quota used up. Request id: r1" {
		t.Errorf("Error() = %q", got)
	}
	e = newError(0, CodeStreamInterrupted, "connection closed", nil, nil)
	if got := e.Error(); got != "ark: StreamInterrupted: connection closed" {
		t.Errorf("Error() = %q", got)
	}
}

func TestRequestIDAndRetryAfterFromHeaders(t *testing.T) {
	h := http.Header{}
	h.Set("X-Tt-Logid", "logid-1")
	h.Set("Retry-After", "7")
	e := newError(429, "RequestBurstTooFast", "slow down", h, nil)
	if e.RequestID != "logid-1" || e.RetryAfter != 7*time.Second {
		t.Errorf("RequestID %q RetryAfter %v", e.RequestID, e.RetryAfter)
	}
	h.Set("X-Request-Id", "rid-2")
	if e := newError(429, "x", "no id here", h, nil); e.RequestID != "rid-2" {
		t.Errorf("X-Request-Id not preferred: %q", e.RequestID)
	}
	if e := newError(400, "x", "bad. request_id=abc123.", nil, nil); e.RequestID != "abc123" {
		t.Errorf("request_id= form: %q", e.RequestID)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := map[string]time.Duration{
		"":    0,
		"1":   time.Second,
		"1.5": 1500 * time.Millisecond,
		"-3":  0,
		"abc": 0,
		now.Add(5 * time.Second).Format(http.TimeFormat):  5 * time.Second,
		now.Add(-5 * time.Second).Format(http.TimeFormat): 0,
	}
	for in, want := range cases {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}
