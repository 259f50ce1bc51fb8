package wxapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Media kinds UploadMedia accepts (a mini program: image only).
const (
	MediaImage = "image"
	MediaVoice = "voice"
	MediaVideo = "video"
	MediaThumb = "thumb"
)

// maxFilenameBytes caps a file name taken from outside.
const maxFilenameBytes = 200

// UploadMedia uploads temporary media (kept 3 days by WeChat) as the
// multipart field "media" and returns its media_id. WeChat checks the
// extension of filename against the kind (image: png, jpg, jpeg, gif;
// voice: amr, mp3; video: mp4; thumb: jpg) and per-kind sizes. r is read
// to the end, at most MaxUploadBytes, before the first request.
func (c *Client) UploadMedia(ctx context.Context, kind, filename string, r io.Reader) (string, error) {
	const op = "wxapi.UploadMedia"
	switch kind {
	case MediaImage, MediaVoice, MediaVideo, MediaThumb:
	default:
		return "", invalid(op, fmt.Sprintf("media kind %q is not image, voice, video or thumb", kind))
	}
	name := cleanFilename(filename)
	if name == "" || path.Ext(name) == "" {
		return "", invalid(op, "the file name needs an extension (WeChat checks it)")
	}
	data, over, err := readCapped(r, c.maxUp)
	switch {
	case err != nil:
		return "", fmt.Errorf("%s: read media: %w", op, err)
	case over:
		return "", fmt.Errorf("%s: %w", op, &TooLargeError{Size: c.maxUp + 1, AtLeast: true, Max: c.maxUp})
	case len(data) == 0:
		return "", invalid(op, "empty media")
	}

	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	ct := mime.TypeByExtension(strings.ToLower(path.Ext(name)))
	if ct == "" {
		ct = "application/octet-stream"
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="media"; filename="%s"`, name))
	h.Set("Content-Type", ct)
	pw, err := mw.CreatePart(h)
	if err == nil {
		_, err = pw.Write(data)
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		return "", fmt.Errorf("%s: multipart: %w", op, err)
	}

	var out struct {
		Type    string `json:"type"`
		MediaID string `json:"media_id"`
	}
	err = c.exec(ctx, request{
		op: op, method: http.MethodPost, path: PathMediaUpload,
		query: url.Values{"type": {kind}}, body: body.Bytes(), ctype: mw.FormDataContentType(),
	}, jsonHandler(PathMediaUpload, &out))
	if err != nil {
		return "", err
	}
	if out.MediaID == "" || len(out.MediaID) > 1024 {
		return "", fmt.Errorf("%s: answer without a usable media_id: %w", op, conv.ErrUnavailable)
	}
	return out.MediaID, nil
}

// media is what DownloadMedia's handler found.
type media struct {
	data        []byte
	contentType string
	filename    string
	videoURL    string
}

// DownloadMedia fetches temporary media by media_id, at most max bytes
// (else a *TooLargeError, errors.Is ErrTooLarge). An answer whose
// Content-Type is application/json or text/plain is WeChat's JSON, not
// media: an error, or for video a {"video_url"} that is then fetched
// (without the token, with the same cap). contentType is the media type
// WeChat declared; filename comes from Content-Disposition (cleaned of any
// path) or is "".
func (c *Client) DownloadMedia(ctx context.Context, mediaID string, max int64) (data []byte, contentType, filename string, err error) {
	const op = "wxapi.DownloadMedia"
	switch {
	case mediaID == "":
		return nil, "", "", invalid(op, "empty media_id")
	case max <= 0:
		return nil, "", "", invalid(op, "max must be positive")
	}
	var m media
	err = c.exec(ctx, request{
		op: op, method: http.MethodGet, path: PathMediaGet, query: url.Values{"media_id": {mediaID}},
	}, func(resp *http.Response, tok string) error {
		var herr error
		m, herr = readMedia(PathMediaGet, resp, max, tok)
		return herr
	})
	if err != nil {
		return nil, "", "", err
	}
	if m.videoURL != "" {
		m, err = c.fetchVideo(ctx, m.videoURL, max)
		if err != nil {
			return nil, "", "", fmt.Errorf("%s: video: %w", op, err)
		}
	}
	return m.data, m.contentType, m.filename, nil
}

// isJSONAnswer tells WeChat's JSON (errors, video_url) from media bytes.
func isJSONAnswer(contentType string) bool {
	ct := strings.ToLower(strings.TrimSpace(contentType))
	return strings.HasPrefix(ct, "application/json") || strings.HasPrefix(ct, "text/plain")
}

// readMedia reads a media/get answer: JSON (error or video_url) or bytes.
func readMedia(apiPath string, resp *http.Response, max int64, secrets ...string) (media, error) {
	ct := resp.Header.Get("Content-Type")
	if isJSONAnswer(ct) {
		body, err := readAnswer(apiPath, resp)
		if err != nil {
			return media{}, err
		}
		var v struct {
			VideoURL string `json:"video_url"`
		}
		if err := decodeAnswer(apiPath, body, &v, secrets...); err != nil {
			return media{}, err
		}
		if v.VideoURL == "" {
			return media{}, fmt.Errorf("wechat %s: JSON answer with neither media nor errcode: %w", apiPath, conv.ErrUnavailable)
		}
		return media{videoURL: v.VideoURL}, nil
	}
	return readBytes(apiPath, resp, max)
}

// readBytes reads a media body under max.
func readBytes(apiPath string, resp *http.Response, max int64) (media, error) {
	if resp.ContentLength > max {
		return media{}, &TooLargeError{Size: resp.ContentLength, Max: max}
	}
	data, over, err := readCapped(resp.Body, max)
	switch {
	case over:
		return media{}, &TooLargeError{Size: max + 1, AtLeast: true, Max: max}
	case err != nil:
		return media{}, &transportError{Path: apiPath, Err: redactErr(err)}
	}
	ct := "application/octet-stream"
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err == nil {
		ct = mt
	}
	return media{data: data, contentType: ct, filename: attachmentName(resp.Header.Get("Content-Disposition"))}, nil
}

// fetchVideo downloads the URL media/get gave for a video. It is WeChat's
// URL, but still checked: http(s) only, bounded, redacted in errors.
func (c *Client) fetchVideo(ctx context.Context, raw string, max int64) (media, error) {
	const where = "video_url"
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(raw) > 4096 {
		return media{}, fmt.Errorf("wechat %s: not an http(s) URL: %w", PathMediaGet, conv.ErrUnavailable)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return media{}, fmt.Errorf("wechat %s: %w", where, conv.ErrUnavailable)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return media{}, &transportError{Path: where, Err: redactErr(err)}
	}
	defer closeBody(resp)
	if resp.StatusCode != http.StatusOK {
		return media{}, &HTTPError{Status: resp.StatusCode, Path: where}
	}
	m, err := readBytes(where, resp, max)
	if err != nil {
		return media{}, err
	}
	if m.filename == "" {
		m.filename = cleanFilename(path.Base(u.Path))
	}
	return m, nil
}

// attachmentName returns the cleaned filename of a Content-Disposition
// header, or "".
func attachmentName(cd string) string {
	if cd == "" || len(cd) > 4096 {
		return ""
	}
	_, params, err := mime.ParseMediaType(cd)
	if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
		return ""
	}
	return cleanFilename(params["filename"])
}

// cleanFilename keeps the last path element of name, without control
// characters, quotes or backslashes, in valid UTF-8, capped; "" if nothing
// sensible is left.
func cleanFilename(name string) string {
	name = strings.ToValidUTF8(name, "")
	name = strings.ReplaceAll(name, "\\", "/")
	name = path.Base(name)
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '"' || r == '/' || r == utf8.RuneError {
			return -1
		}
		return r
	}, name)
	name = strings.TrimSpace(name)
	if len(name) > maxFilenameBytes {
		ext := path.Ext(name)
		if len(ext) > 16 {
			ext = ""
		}
		cut := maxFilenameBytes - len(ext)
		for cut > 0 && !utf8.RuneStart(name[cut]) {
			cut--
		}
		name = name[:cut] + ext
	}
	if name == "." || name == ".." {
		return ""
	}
	return name
}
