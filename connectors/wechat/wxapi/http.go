package wxapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// DefaultAPIBase is WeChat's API host.
const DefaultAPIBase = "https://api.weixin.qq.com"

// maxJSONBytes caps every JSON answer read from WeChat.
const maxJSONBytes = 1 << 20

// drainBytes is how much of an unread body is discarded on close so the
// connection can be reused; a longer rest closes the connection instead.
const drainBytes = 64 << 10

// defaultHTTPClient follows no redirects: a redirected stable_token POST
// would carry the AppSecret to wherever the redirect points.
func defaultHTTPClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

// normalizeBase checks an api_base and drops its trailing slashes. A path
// prefix (an egress proxy at http://proxy/wx) is kept.
func normalizeBase(op, raw string) (string, error) {
	if raw == "" {
		return DefaultAPIBase, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%s: APIBase: %w: not a URL", op, conv.ErrInvalid)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%s: APIBase %q: %w: must be an http(s) URL with a host", op, redactURL(raw), conv.ErrInvalid)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%s: APIBase %q: %w: no query, fragment or user info", op, redactURL(raw), conv.ErrInvalid)
	}
	return strings.TrimRight(raw, "/"), nil
}

// redactURL drops query, fragment and user info: the query of a WeChat
// call holds the access token (or, for /cgi-bin/token, the secret).
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment, u.User = "", false, "", "", nil
	return u.String()
}

// redactErr rewrites the URL inside an *url.Error (what http.Client.Do
// returns), keeping its Op and cause for errors.Is.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return &url.Error{Op: ue.Op, URL: redactURL(ue.URL), Err: ue.Err}
	}
	return err
}

// closeBody discards a bounded rest of the body and closes it.
func closeBody(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainBytes))
	_ = resp.Body.Close()
}

// readCapped reads r to the end; over is true (and the bytes partial) when
// it holds more than max bytes.
func readCapped(r io.Reader, max int64) (b []byte, over bool, err error) {
	b, err = io.ReadAll(io.LimitReader(r, max+1))
	if int64(len(b)) > max {
		return b[:max], true, err
	}
	return b, false, err
}

// readAnswer reads a bounded JSON answer body.
func readAnswer(path string, resp *http.Response) ([]byte, error) {
	b, over, err := readCapped(resp.Body, maxJSONBytes)
	if err != nil {
		return nil, &transportError{Path: path, Err: redactErr(err)}
	}
	if over {
		return nil, fmt.Errorf("wechat %s: answer over %d bytes: %w", path, maxJSONBytes, conv.ErrUnavailable)
	}
	return b, nil
}

// errAnswer is the error part every WeChat JSON answer may carry.
type errAnswer struct {
	ErrCode int    `json:"errcode"`
	ErrMsg  string `json:"errmsg"`
}

// decodeAnswer parses a WeChat JSON answer: a non-zero errcode becomes an
// *APIError (its errmsg cleaned of the secrets given); otherwise the body
// is decoded into out, if out is not nil.
func decodeAnswer(path string, body []byte, out any, secrets ...string) error {
	var ea errAnswer
	if err := json.Unmarshal(body, &ea); err != nil {
		return fmt.Errorf("wechat %s: malformed answer (%d bytes): %w", path, len(body), conv.ErrUnavailable)
	}
	if ea.ErrCode != 0 {
		return &APIError{Code: ea.ErrCode, Msg: cleanMsg(ea.ErrMsg, secrets...), Path: path}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("wechat %s: malformed answer (%d bytes): %w", path, len(body), conv.ErrUnavailable)
	}
	return nil
}

// encodeJSON marshals without HTML escaping: WeChat shows text as sent,
// and "<" stays "<" in the recorded body.
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
