package wechattest

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
)

// Media is one temporary media file held by the fake.
type Media struct {
	ID          string
	AppID       string
	Type        string // image, voice, video, thumb; "file" for PutMedia of other content
	ContentType string
	Filename    string
	Data        []byte
	Created     time.Time
}

type mediaRec struct{ Media }

// Extensions media/upload accepts per type, per the upload docs.
var mediaExts = map[string][]string{
	MediaImage: {".png", ".jpeg", ".jpg", ".gif"},
	MediaVoice: {".amr", ".mp3"},
	MediaVideo: {".mp4"},
	MediaThumb: {".jpg", ".jpeg"},
}

// Errors for an upload over the size cap, per type.
var mediaSizeErr = map[string]apiErr{
	MediaImage: {40009, "invalid image size"},
	MediaVoice: {40010, "invalid voice size"},
	MediaVideo: {40011, "invalid video size"},
	MediaThumb: {40012, "invalid thumb size"},
}

// PutMedia stores media as if a user had sent it (the MediaId of a pushed
// image or voice message) and returns its media id. The type follows the
// content type: image/*, audio/* (voice), video/*, else "file". media/get
// serves it with contentType and filename; video answers a video_url.
func (s *Server) PutMedia(appID, contentType, filename string, data []byte) string {
	typ := "file"
	switch {
	case strings.HasPrefix(contentType, "image/"):
		typ = MediaImage
	case strings.HasPrefix(contentType, "audio/"):
		typ = MediaVoice
	case strings.HasPrefix(contentType, "video/"):
		typ = MediaVideo
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.storeMediaLocked(s.appLocked(appID), typ, contentType, filename, data)
	return m.ID
}

// Media returns the media stored under id (uploaded or put), expired or not.
func (s *Server) Media(mediaID string) (Media, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.apps {
		if m := a.media[mediaID]; m != nil {
			cp := m.Media
			cp.Data = append([]byte(nil), m.Data...)
			return cp, true
		}
	}
	return Media{}, false
}

func (s *Server) storeMediaLocked(a *app, typ, contentType, filename string, data []byte) *mediaRec {
	id := randomID(48)
	if filename == "" {
		ext := ".bin"
		if exts, _ := mime.ExtensionsByType(contentType); len(exts) > 0 {
			ext = exts[0]
		}
		filename = id + ext
	}
	m := &mediaRec{Media{
		ID: id, AppID: a.id, Type: typ, ContentType: contentType, Filename: filename,
		Data: append([]byte(nil), data...), Created: s.now(),
	}}
	a.media[id] = m
	s.notifyLocked()
	return m
}

// mediaLocked returns a live media of app a, or nil.
func (s *Server) mediaLocked(a *app, id string, now time.Time) *mediaRec {
	m := a.media[id]
	if m == nil || !now.Before(m.Created.Add(s.cfg.MediaTTL)) {
		return nil
	}
	return m
}

// handleUpload is POST /cgi-bin/media/upload?type=…, the file in the
// multipart field "media". The stored name is MEDIA_ID plus the uploaded
// extension, as media/get reports it.
func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		s.writeErr(w, r, errRequirePost)
		return
	}
	s.mu.Lock()
	a, _, e := s.authLocked(r)
	typ := r.URL.Query().Get("type")
	limit := s.cfg.MediaMaxBytes[typ]
	if e == nil && (mediaExts[typ] == nil || (a.kind == kindMiniProgram && typ != MediaImage)) {
		e = &errMediaType
	}
	s.mu.Unlock()
	if e != nil {
		s.writeErr(w, r, *e)
		return
	}

	data, filename, contentType, e := readMediaPart(w, r, typ, limit)
	if e != nil {
		s.writeErr(w, r, *e)
		return
	}
	s.mu.Lock()
	m := s.storeMediaLocked(a, typ, contentType, "", data)
	m.Filename = m.ID + strings.ToLower(path.Ext(filename))
	out := map[string]any{"type": typ, "media_id": m.ID, "created_at": m.Created.Unix(), "item": []any{}}
	s.mu.Unlock()
	writeJSON(w, out)
}

// readMediaPart streams the multipart body to the "media" part and reads
// it with the type's cap; other parts are skipped.
func readMediaPart(w http.ResponseWriter, r *http.Request, typ string, limit int64) ([]byte, string, string, *apiErr) {
	r.Body = http.MaxBytesReader(w, r.Body, limit+1<<20)
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, "", "", &errMediaMissing
	}
	for {
		part, err := mr.NextPart()
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				e := mediaSizeErr[typ]
				return nil, "", "", &e
			}
			return nil, "", "", &errMediaMissing
		}
		if part.FormName() != "media" || part.FileName() == "" {
			_, _ = io.Copy(io.Discard, part)
			continue
		}
		data, err := io.ReadAll(io.LimitReader(part, limit+1))
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig) || int64(len(data)) > limit:
			e := mediaSizeErr[typ]
			return nil, "", "", &e
		case err != nil:
			return nil, "", "", &errMediaMissing
		case len(data) == 0:
			return nil, "", "", &errEmptyMedia
		}
		name := part.FileName()
		ext := strings.ToLower(path.Ext(name))
		allowed := false
		for _, x := range mediaExts[typ] {
			allowed = allowed || x == ext
		}
		if !allowed {
			return nil, "", "", &errFileType
		}
		ct := part.Header.Get("Content-Type")
		if ct == "" || ct == "application/octet-stream" {
			ct = mime.TypeByExtension(ext)
		}
		return data, name, ct, nil
	}
}

// handleMediaGet is GET /cgi-bin/media/get: the bytes with their content
// type and an attachment filename, or a JSON error body (Content-Type
// application/json): that header is how clients tell the two apart.
// Video media answer {"video_url": …} instead of bytes.
func (s *Server) handleMediaGet(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	a, _, e := s.authLocked(r)
	var m *mediaRec
	if e == nil {
		id := r.URL.Query().Get("media_id")
		switch m = s.mediaLocked(a, id, s.now()); {
		case id == "":
			e = &errMediaIDMissing
		case m == nil:
			e = &errMediaID
		}
	}
	var cp Media
	if m != nil {
		cp = m.Media
	}
	s.mu.Unlock()
	if e != nil {
		s.writeErr(w, r, *e)
		return
	}
	if cp.Type == MediaVideo {
		writeJSON(w, map[string]any{"video_url": "http://" + r.Host + videoPath + cp.ID})
		return
	}
	serveMediaBytes(w, cp)
}

func serveMediaBytes(w http.ResponseWriter, m Media) {
	h := w.Header()
	ct := m.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	h.Set("Content-Disposition", `attachment; filename="`+quoteSafe(m.Filename)+`"`)
	h.Set("Cache-Control", "no-cache, must-revalidate")
	h.Set("Content-Length", strconv.Itoa(len(m.Data)))
	_, _ = w.Write(m.Data)
}

// serveVideo serves the download URL handed out for video media; like
// WeChat's, it needs no token.
func (s *Server) serveVideo(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, videoPath)
	s.mu.Lock()
	var cp Media
	found := false
	now := s.now()
	for _, a := range s.apps {
		if m := s.mediaLocked(a, id, now); m != nil && m.Type == MediaVideo {
			cp, found = m.Media, true
		}
	}
	s.mu.Unlock()
	if !found {
		http.NotFound(w, r)
		return
	}
	serveMediaBytes(w, cp)
}

// quoteSafe drops the characters that would break a quoted header value.
func quoteSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}
