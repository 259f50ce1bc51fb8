package wxapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// APIError is an answer of WeChat's with an errcode other than 0. Its text
// carries the errcode, WeChat's errmsg (capped, control characters and any
// credential scrubbed) and the API path, never the query with the access
// token or secret.
type APIError struct {
	Code int
	Msg  string
	Path string // the API path, e.g. "/cgi-bin/message/custom/send", without api_base or query
}

func (e *APIError) Error() string {
	return fmt.Sprintf("wechat %s: errcode %d: %s", e.Path, e.Code, e.Msg)
}

// Unwrap gives the conv error kinds of the errcode, so callers can use
// errors.Is(err, conv.ErrForbidden) and the like; unknown codes have none.
func (e *APIError) Unwrap() []error { return codeKinds[e.Code] }

// Reason is a short English reason for the agent console, starting with
// the errcode.
func (e *APIError) Reason() string {
	if r, ok := codeReasons[e.Code]; ok {
		return fmt.Sprintf("%d: %s", e.Code, r)
	}
	msg := shortMsg(e.Msg)
	if msg == "" {
		return fmt.Sprintf("errcode %d", e.Code)
	}
	return fmt.Sprintf("errcode %d: %s", e.Code, msg)
}

// Errcodes the client acts on.
const (
	CodeBusy              = -1
	CodeInvalidCredential = 40001
	CodeInvalidOpenID     = 40003
	CodeInvalidToken      = 40014
	CodeIPNotAllowed      = 40164
	CodeTokenExpired      = 42001
	CodeUnsubscribed      = 43004
	CodeDailyQuota        = 45009
	CodeMinuteQuota       = 45011
	CodeOutOfWindow       = 45015
	CodeOutOfCount        = 45047
	CodeUnauthorizedAPI   = 48001
)

// tokenRejected reports the errcodes that mean "this access token is no
// good": the client invalidates it and retries once.
func tokenRejected(code int) bool {
	return code == CodeInvalidCredential || code == CodeInvalidToken || code == CodeTokenExpired
}

var codeReasons = map[int]string{
	CodeBusy:              "WeChat is busy",
	CodeInvalidCredential: "access token rejected",
	CodeInvalidOpenID:     "invalid openid",
	CodeInvalidToken:      "access token invalid",
	CodeIPNotAllowed:      "this server's IP is not on the app's allow list (set api_base to your egress proxy)",
	CodeTokenExpired:      "access token expired",
	CodeUnsubscribed:      "the customer unfollowed",
	CodeDailyQuota:        "daily API quota reached",
	CodeMinuteQuota:       "API per-minute limit reached",
	CodeOutOfWindow:       "outside the 48-hour reply window",
	CodeOutOfCount:        "over the reply limit for this customer message",
	CodeUnauthorizedAPI:   "API not authorized for this account",
	40013:                 "invalid AppID",
	40125:                 "invalid AppSecret",
	40007:                 "invalid or expired media_id",
	45080:                 "typing needs a message exchanged within the last 30 seconds",
	45081:                 "already typing",
}

// codeKinds maps errcodes to conv kinds. Permanent for this input
// (conv.Permanent): ErrInvalid, ErrForbidden. Worth retrying later:
// ErrUnavailable. Credentials and quotas get ErrUnauthorized and
// ErrRateLimited: neither is retried at once, neither poisons the message.
var codeKinds = func() map[int][]error {
	m := map[int][]error{
		CodeBusy:              {conv.ErrUnavailable},
		CodeMinuteQuota:       {conv.ErrUnavailable, conv.ErrRateLimited},
		CodeDailyQuota:        {conv.ErrRateLimited},
		CodeInvalidCredential: {conv.ErrUnauthorized},
		CodeInvalidToken:      {conv.ErrUnauthorized},
		CodeTokenExpired:      {conv.ErrUnauthorized},
		40013:                 {conv.ErrUnauthorized}, // invalid appid
		40125:                 {conv.ErrUnauthorized}, // invalid appsecret
		41001:                 {conv.ErrUnauthorized}, // access_token missing
		41002:                 {conv.ErrUnauthorized}, // appid missing
		41004:                 {conv.ErrUnauthorized}, // appsecret missing
		CodeIPNotAllowed:      {conv.ErrForbidden},
		CodeUnsubscribed:      {conv.ErrForbidden},
		CodeOutOfWindow:       {conv.ErrForbidden},
		CodeOutOfCount:        {conv.ErrForbidden},
		CodeUnauthorizedAPI:   {conv.ErrForbidden},
		45080:                 {conv.ErrForbidden}, // typing without a recent exchange
		45081:                 {conv.ErrConflict},  // already typing
		CodeInvalidOpenID:     {conv.ErrInvalid},
	}
	// Malformed requests: wrong grant type, media type, file type, media id,
	// message type, sizes, missing fields, empty data, content size, article
	// count, bad command, data format.
	for _, c := range []int{40002, 40004, 40005, 40007, 40008, 40009, 40010, 40011, 40012,
		41005, 41006, 41009, 43002, 44001, 44002, 44003, 44004, 45002, 45008, 45072, 47001} {
		m[c] = []error{conv.ErrInvalid}
	}
	return m
}()

// HTTPError is an answer with an HTTP status other than 200: WeChat
// answers its errors with 200, so this is a proxy or WeChat's front end
// in trouble.
type HTTPError struct {
	Status int
	Path   string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("wechat %s: HTTP %d %s", e.Path, e.Status, http.StatusText(e.Status))
}

// Unwrap: every HTTP failure is conv.ErrUnavailable (api_base or a proxy
// in the way may be fixed later); Retryable says whether retrying soon helps.
func (e *HTTPError) Unwrap() error { return conv.ErrUnavailable }

// transportError is a request that got no answer: connection refused,
// reset, TLS, timeout, or the caller's context. Err is the redacted
// *url.Error, so errors.Is(err, context.DeadlineExceeded) still works.
type transportError struct {
	Path string
	Err  error
}

func (e *transportError) Error() string   { return fmt.Sprintf("wechat %s: %v", e.Path, e.Err) }
func (e *transportError) Unwrap() []error { return []error{conv.ErrUnavailable, e.Err} }

// ErrTooLarge is matched (errors.Is) by a *TooLargeError.
var ErrTooLarge = errors.New("media too large")

// TooLargeError says media were over the caller's cap. It is conv.ErrInvalid:
// the same media will not shrink.
type TooLargeError struct {
	Size    int64 // the declared Content-Length, or the bytes seen when AtLeast
	AtLeast bool  // Size is a lower bound: no length was declared
	Max     int64
}

func (e *TooLargeError) Error() string {
	if e.AtLeast {
		return fmt.Sprintf("media too large: more than %d bytes (max %d)", e.Max, e.Max)
	}
	return fmt.Sprintf("media too large: %d bytes (max %d)", e.Size, e.Max)
}

func (e *TooLargeError) Unwrap() []error { return []error{ErrTooLarge, conv.ErrInvalid} }

// ErrCircuitOpen is matched by calls refused without trying because the
// app's recent calls kept failing; they are conv.ErrUnavailable too.
var ErrCircuitOpen = errors.New("circuit open")

// Retryable reports whether trying the same call again later can succeed:
// network failures and timeouts, HTTP 5xx (and 408, 429), errcode -1 and
// 45011, an open circuit, and anything else that is conv.ErrUnavailable
// (a garbled answer, no token after waiting for another node). WeChat's
// verdicts on the message, the user or the account (45015, 45047, 40003,
// 43004, 48001, 40164, …), a token rejected twice, the daily quota, other
// HTTP statuses and a caller's cancellation are not.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, ErrCircuitOpen) {
		return true
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Code == CodeBusy || ae.Code == CodeMinuteQuota
	}
	var he *HTTPError
	if errors.As(err, &he) {
		return he.Status >= 500 || he.Status == http.StatusTooManyRequests || he.Status == http.StatusRequestTimeout
	}
	return errors.Is(err, conv.ErrUnavailable)
}

// maxMsgBytes caps errmsg as kept in an APIError.
const maxMsgBytes = 256

// cleanMsg caps errmsg, keeps it valid UTF-8 on one line, and removes the
// given secrets should WeChat (or a proxy) ever echo one.
func cleanMsg(msg string, secrets ...string) string {
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	msg = strings.ToValidUTF8(msg, "?")
	msg = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, msg)
	if len(msg) > maxMsgBytes {
		cut := maxMsgBytes
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "…"
	}
	return strings.TrimSpace(msg)
}

// shortMsg drops the request id and hint WeChat appends to errmsg: noise
// for a person reading the console.
func shortMsg(msg string) string {
	for _, sep := range []string{" rid:", " hint:", ", hints:", " hints:"} {
		if i := strings.Index(msg, sep); i >= 0 {
			msg = msg[:i]
		}
	}
	return strings.TrimSpace(msg)
}
