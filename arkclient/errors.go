package arkclient

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/arkbot/arkbot/internal/transport"
)

// Synthetic error codes, for failures Ark did not name itself.
const (
	// CodeTimeout: no first token within the first-token timeout, or silence
	// longer than the idle timeout between chunks.
	CodeTimeout = "Timeout"
	// CodeStreamInterrupted: the stream broke (connection cut, malformed
	// data) before the answer finished.
	CodeStreamInterrupted = "StreamInterrupted"
	// CodeNetworkError: the connection failed before a response arrived.
	CodeNetworkError = "NetworkError"
	// CodeConnectFailed: no connection to Ark (or its proxy) could be
	// opened: no answer within the connect timeout, refused, or a name that
	// does not resolve. Retried at most once.
	CodeConnectFailed = "ConnectFailed"
	// CodeTLSCertificate: Ark's TLS certificate could not be verified
	// (unknown authority, wrong host name, expired). Not retried.
	CodeTLSCertificate = "TLSCertificate"
	// CodeCanceled: the caller's context ended or the Stream was closed.
	CodeCanceled = "Canceled"
	// CodeInvalidRequest: the request could not be built locally.
	CodeInvalidRequest = "InvalidRequest"
	// CodeChainLost: Ark no longer has the response a Responses API
	// request continues (previous_response_id unknown, expired or in
	// another region). Start a new chain from the transcript.
	CodeChainLost = "PreviousResponseNotFound"
)

// Error is a failed Ark call. Every error returned by Client.Stream and
// Stream.Recv (other than io.EOF) is an *Error.
type Error struct {
	Status      int           // HTTP status; 0 inside a stream or for network errors
	Code        string        // Ark's code, e.g. "ModelNotOpen", or a synthetic Code* constant; "HTTP<status>" when a non-JSON error body named none
	Message     string        // Ark's message (may contain "Request id: ..."), or a description of the failure
	RequestID   string        // Ark's request id, from the message or the X-Request-Id / X-Tt-Logid headers, when known
	Retryable   bool          // trying again later may succeed
	Interrupted bool          // returned by Stream.Recv, i.e. after the answer began streaming to the caller
	RetryAfter  time.Duration // from the Retry-After header, if any

	cause error
	user  string // UserMessage's text when it depends on more than the code
}

// Error describes the failure for logs: "ark: <Code> (HTTP n): <message>".
// It never contains the API key.
func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("ark: %s (HTTP %d): %s", e.Code, e.Status, e.Message)
	}
	return fmt.Sprintf("ark: %s: %s", e.Code, e.Message)
}

// Unwrap returns the underlying cause, if any (e.g. context.Canceled).
func (e *Error) Unwrap() error { return e.cause }

// kind groups error codes that call for the same handling and words.
type kind int

const (
	kindUnknown kind = iota
	kindInvalid
	kindTooLong
	kindModeration
	kindAuth
	kindAccess
	kindModelNotOpen
	kindBadModel
	kindRateLimit
	kindQuota
	kindServer
	kindTimeout
	kindInterrupted
	kindNetwork
	kindConnect
	kindTLS
	kindCanceled
)

// classify maps an Ark code (and the HTTP status when the code is unknown)
// to its kind, following ARK.md's error table.
func classify(status int, code string) kind {
	switch code {
	case "MissingParameter":
		return kindInvalid
	case "OutofContextError":
		return kindTooLong
	case "AuthenticationError":
		return kindAuth
	case "AccountOverdueError", "AccessDenied", "OperationDenied.ServiceNotOpen", "OperationDenied.ServiceOverdue":
		return kindAccess
	case "ModelNotOpen":
		return kindModelNotOpen
	case "UnsupportedModel":
		return kindBadModel
	case "ModelAccountRpmRateLimitExceeded", "ModelAccountTpmRateLimitExceeded", "RequestBurstTooFast",
		"ServerOverloaded", "InflightBatchsizeExceeded":
		return kindRateLimit
	case "QuotaExceeded", "SetLimitExceeded":
		return kindQuota
	case "InternalServiceError":
		return kindServer
	case CodeTimeout:
		return kindTimeout
	case CodeStreamInterrupted:
		return kindInterrupted
	case CodeNetworkError:
		return kindNetwork
	case CodeConnectFailed:
		return kindConnect
	case CodeTLSCertificate:
		return kindTLS
	case CodeCanceled:
		return kindCanceled
	case CodeInvalidRequest, CodeChainLost:
		return kindInvalid
	}
	switch {
	case strings.HasPrefix(code, "InvalidParameter"):
		return kindInvalid
	case strings.HasPrefix(code, "SensitiveContentDetected"), strings.HasSuffix(code, "SensitiveContentDetected"),
		strings.HasSuffix(code, "RiskDetection"):
		return kindModeration
	case strings.HasPrefix(code, "InvalidEndpointOrModel"):
		return kindBadModel
	case strings.HasPrefix(code, "RateLimitExceeded"):
		return kindRateLimit
	case strings.HasPrefix(code, "OperationDenied"):
		return kindAccess
	}
	switch {
	case status == http.StatusUnauthorized:
		return kindAuth
	case status == http.StatusForbidden:
		return kindAccess
	case status == http.StatusTooManyRequests:
		return kindRateLimit
	case status >= 500:
		return kindServer
	}
	return kindUnknown
}

// retryable reports whether a fresh attempt may succeed. Quota errors are not
// retryable despite their 429; a first-token timeout is not retried either,
// as the wait was already long.
func (k kind) retryable() bool {
	switch k {
	case kindRateLimit, kindServer, kindNetwork, kindConnect, kindInterrupted:
		return true
	}
	return false
}

// newError builds an Error from an Ark (or synthetic) code and fills in the
// derived fields.
func newError(status int, code, message string, header http.Header, cause error) *Error {
	e := &Error{Status: status, Code: code, Message: message, cause: cause}
	e.Retryable = classify(status, code).retryable()
	e.RequestID = requestID(message, header)
	if header != nil && status != 0 {
		e.RetryAfter = parseRetryAfter(header.Get("Retry-After"), time.Now())
	}
	return e
}

var requestIDPattern = regexp.MustCompile(`(?i)request[ _-]?id\s*[:=]\s*([A-Za-z0-9][A-Za-z0-9._-]*)`)

// requestID finds Ark's request id in the message, else in the headers.
func requestID(message string, header http.Header) string {
	if m := requestIDPattern.FindStringSubmatch(message); m != nil {
		return strings.TrimRight(m[1], ".")
	}
	for _, h := range []string{"X-Request-Id", "X-Tt-Logid"} {
		if v := header.Get(h); v != "" {
			return v
		}
	}
	return ""
}

// parseRetryAfter reads Retry-After as seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		if n <= 0 || n > 24*3600 {
			return 0
		}
		return time.Duration(n * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// UserMessage says in plain words, for chat users, what happened and what to
// do. It names the request id as a short suffix when known, and never
// includes Ark's raw message or any secret.
func (e *Error) UserMessage() string {
	msg := e.userText()
	if e.RequestID != "" {
		msg += " (request id: " + e.RequestID + ")"
	}
	return msg
}

func (e *Error) userText() string {
	if e.user != "" {
		return e.user
	}
	switch classify(e.Status, e.Code) {
	case kindInvalid:
		return "Ark rejected the request as invalid. Try rephrasing, or /reset to start a new conversation; if it keeps happening, tell the bot's operator."
	case kindTooLong:
		return "This conversation is too long for the model. Use /reset to start a new one."
	case kindModeration:
		return "Ark's content moderation blocked this message or its answer. Please rephrase."
	case kindAuth:
		return "The bot's Ark API key is wrong or expired: an operator must fix ARK_API_KEY."
	case kindAccess:
		return "The operator's Ark account has a billing or access problem (overdue, or service not activated): an operator must check the Ark console."
	case kindModelNotOpen:
		return "This model is not activated for the bot's Ark account: an operator must enable it in the Ark console under 开通管理 (Activation)."
	case kindBadModel:
		return "The model or endpoint ID in config.yaml is wrong, or this account must use an ep- endpoint ID: an operator must fix config.yaml. Try another model with /model."
	case kindRateLimit:
		return "Ark is busy right now (rate limit); please try again in a moment."
	case kindQuota:
		return "The operator's Ark quota or spending cap has been reached: an operator must top up or raise the limit in the Ark console."
	case kindServer:
		return "Ark had a temporary error; please try again in a moment."
	case kindTimeout:
		if e.Interrupted {
			return "Ark stopped sending the answer (timeout), so it is incomplete; please try again."
		}
		return "Ark took too long to start answering (timeout); please try again in a moment."
	case kindInterrupted:
		if e.Interrupted {
			return "The answer was interrupted by a connection problem, so it is incomplete; please try again."
		}
		return "The connection to Ark broke before the answer started; please try again in a moment."
	case kindNetwork:
		return "The bot could not reach Ark (network error); please try again in a moment."
	case kindConnect:
		return "I can't connect to Ark. " + connectAdvice
	case kindTLS:
		return "Ark's TLS certificate could not be verified. " + tlsAdvice
	case kindCanceled:
		return "The request was cancelled."
	}
	if e.Status >= 400 && e.Status < 500 {
		return fmt.Sprintf("Ark refused the request (%s); if it keeps happening, tell the bot's operator.", e.Code)
	}
	return fmt.Sprintf("Ark returned an error (%s); please try again, and tell the bot's operator if it keeps happening.", e.Code)
}

// What to do about a connect or a TLS certificate failure.
const (
	connectAdvice = "Please try again later; if it keeps happening, an operator must check the network, the proxy (HTTPS_PROXY) and ark.base_url."
	tlsAdvice     = "A proxy intercepting TLS? Then set SSL_CERT_FILE to its CA certificate; otherwise an operator must check ark.base_url."
)

// connectText tells users that no connection to Ark at ark (host:port)
// could be opened, and why: ce.Addr is the proxy's address when the bot
// connects through one.
func connectText(ark string, ce *transport.ConnectError) string {
	where := "at " + ark
	if !strings.EqualFold(ce.Addr, ark) {
		where = "through the proxy at " + ce.Addr
	}
	var dns *net.DNSError
	why := ""
	switch {
	case ce.Limit > 0:
		why = fmt.Sprintf(": no connection within %s", ce.Limit)
	case errors.Is(ce.Err, syscall.ECONNREFUSED):
		why = ": connection refused"
	case errors.As(ce.Err, &dns) && dns.IsNotFound:
		why = fmt.Sprintf(": the name %s is not found", dns.Name)
	case ce.Timeout():
		why = ": timed out"
	}
	return fmt.Sprintf("I can't connect to Ark %s%s. %s", where, why, connectAdvice)
}

// tlsCertificateError finds a certificate verification failure in err.
func tlsCertificateError(err error) error {
	var verr *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &verr):
		return verr.Err
	case errors.As(err, &unknown):
		return unknown
	case errors.As(err, &host):
		return host
	case errors.As(err, &invalid):
		return invalid
	}
	return nil
}

// tlsText tells users that Ark's certificate at ark (host:port) failed
// verification with cert, in words for the usual causes.
func tlsText(ark string, cert error) string {
	why := cert.Error()
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(cert, &unknown):
		why = "it is signed by an unknown authority"
	case errors.As(cert, &host):
		why = "it is not valid for " + host.Host
	case errors.As(cert, &invalid) && invalid.Reason == x509.Expired:
		why = "it has expired or is not yet valid (is the clock right?)"
	}
	return fmt.Sprintf("Ark's TLS certificate at %s could not be verified: %s. %s", ark, why, tlsAdvice)
}
