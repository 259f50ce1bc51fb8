// Package media keeps uploaded files under the data dir and hands out
// signed, expiring URLs for them. A key is "<tenant>/<random hex>.<ext>":
// unguessable, tenant-scoped, and free of anything a client chose.
package media

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// URLPrefix is where media is served.
const URLPrefix = "/v1/media/"

var keyRE = regexp.MustCompile(`^[0-9]{1,20}/[0-9a-f]{32}\.[a-z0-9]{1,8}$`)

// Store is a directory of media files with an HMAC key for URLs.
type Store struct {
	dir    string
	secret []byte
	ttl    time.Duration
	now    func() time.Time
}

// Open returns a Store under dir (created 0700). secret signs URLs; URLs
// live ttl.
func Open(dir string, secret []byte, ttl time.Duration) (*Store, error) {
	if len(secret) < 32 {
		return nil, errors.New("media: signing secret shorter than 32 bytes")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	return &Store{dir: dir, secret: secret, ttl: ttl, now: time.Now}, nil
}

// extensions fixes the extension of the common types: the machine's MIME
// table varies (image/jpeg may list ".jfif" first, text/html ".ehtml"), and
// how a file is served is decided by its extension.
var extensions = map[string]string{
	"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp",
	"text/html": "html", "text/plain": "txt", "application/pdf": "pdf", "message/rfc822": "eml",
	"audio/amr": "amr", "audio/mpeg": "mp3", "audio/ogg": "ogg", "video/mp4": "mp4",
}

// Ext is the extension (without the dot) Put gives a file of mimeType:
// the fixed one of a common type, else the first the MIME table lists,
// else "bin".
func Ext(mimeType string) string {
	if t, _, err := mime.ParseMediaType(mimeType); err == nil {
		mimeType = t
	}
	if e, ok := extensions[mimeType]; ok {
		return e
	}
	if exts, _ := mime.ExtensionsByType(mimeType); len(exts) > 0 {
		return exts[0][1:]
	}
	return "bin"
}

// Put stores r (at most limit bytes; more is an error wrapping errTooLarge
// from the caller's view: ErrTooLarge) as a new file of type mimeType and
// returns its key and size.
func (s *Store) Put(tenant conv.TenantID, mimeType string, r io.Reader, limit int64) (string, int64, error) {
	ext := Ext(mimeType)
	var rnd [16]byte
	_, _ = rand.Read(rnd[:])
	key := tenant.String() + "/" + hex.EncodeToString(rnd[:]) + "." + ext
	path := filepath.Join(s.dir, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", 0, fmt.Errorf("media.Put: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", 0, fmt.Errorf("media.Put: %w", err)
	}
	n, err := io.Copy(f, io.LimitReader(r, limit+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > limit {
		err = ErrTooLarge
	}
	if err != nil {
		os.Remove(path)
		return "", 0, fmt.Errorf("media.Put: %w", err)
	}
	return key, n, nil
}

// ErrTooLarge: the file passed the limit.
var ErrTooLarge = errors.New("file larger than the limit")

// URL returns the signed URL of key, valid for the store's ttl.
func (s *Store) URL(key string) string {
	exp := strconv.FormatInt(s.now().Add(s.ttl).Unix(), 10)
	return URLPrefix + key + "?exp=" + exp + "&sig=" + s.sign(key, exp)
}

func (s *Store) sign(key, exp string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(key + "\x00" + exp))
	return hex.EncodeToString(m.Sum(nil))
}

// Open checks a request for key with query q (exp, sig) and opens the
// file. A malformed key, bad signature or past expiry is ErrDenied; a
// missing file is conv.ErrNotFound.
func (s *Store) Open(key string, q url.Values) (*os.File, error) {
	if !keyRE.MatchString(key) {
		return nil, fmt.Errorf("media: %w: malformed key", conv.ErrNotFound)
	}
	exp, sig := q.Get("exp"), q.Get("sig")
	want := s.sign(key, exp)
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return nil, fmt.Errorf("media: %w: bad signature", ErrDenied)
	}
	t, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || s.now().Unix() > t {
		return nil, fmt.Errorf("media: %w: link expired", ErrDenied)
	}
	f, err := os.Open(filepath.Join(s.dir, filepath.FromSlash(key)))
	if err != nil {
		return nil, fmt.Errorf("media: %w", conv.ErrNotFound)
	}
	return f, nil
}

// ErrDenied: a signature that does not match or a link past its expiry.
var ErrDenied = errors.New("denied")

// Tenant returns the tenant a key belongs to.
func Tenant(key string) (conv.TenantID, bool) {
	i := 0
	for i < len(key) && key[i] != '/' {
		i++
	}
	id, err := strconv.ParseInt(key[:i], 10, 64)
	return conv.TenantID(id), err == nil && id > 0
}
