package media

import (
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Upload limits a caller applies to Receive.
type Upload struct {
	// MaxBytes bounds the file.
	MaxBytes int64
	// Types is the allowlist of sniffed MIME types.
	Types []string
}

// DefaultUpload is what an upload may be unless configured otherwise:
// 10 MiB of common images, PDF or plain text.
var DefaultUpload = Upload{MaxBytes: 10 << 20,
	Types: []string{"image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain"}}

// ErrType: the file's sniffed type is not allowed.
var ErrType = errors.New("file type not allowed")

// Receive stores the "file" field of a multipart upload for tenant and
// returns the part that shows it (image or file, with its signed URL). The
// type is sniffed from the bytes, never taken from the client. Errors:
// ErrTooLarge and ErrType wrapped with a message for the user, conv.ErrInvalid
// for a request that is not such an upload.
func (s *Store) Receive(w http.ResponseWriter, r *http.Request, tenant conv.TenantID, u Upload) (conv.Part, error) {
	tooLarge := fmt.Errorf("%w: the file is larger than %s", ErrTooLarge, HumanBytes(u.MaxBytes))
	if r.ContentLength > u.MaxBytes+64<<10 {
		return conv.Part{}, tooLarge
	}
	r.Body = http.MaxBytesReader(w, r.Body, u.MaxBytes+64<<10)
	mr, err := r.MultipartReader()
	if err != nil {
		return conv.Part{}, fmt.Errorf("%w: expected multipart/form-data with a file field", conv.ErrInvalid)
	}
	var part *multipart.Part
	for {
		p, err := mr.NextPart()
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return conv.Part{}, tooLarge
			}
			return conv.Part{}, fmt.Errorf("%w: no file field in the upload", conv.ErrInvalid)
		}
		if p.FormName() == "file" {
			part = p
			break
		}
	}
	head := make([]byte, 512)
	n, err := io.ReadFull(part, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return conv.Part{}, tooLargeOr(err, tooLarge)
	}
	head = head[:n]
	mt, _, _ := strings.Cut(http.DetectContentType(head), ";")
	if !slices.Contains(u.Types, mt) {
		return conv.Part{}, fmt.Errorf("%w: files of type %s cannot be sent here (allowed: %s)", ErrType, mt, strings.Join(u.Types, ", "))
	}
	key, size, err := s.Put(tenant, mt, io.MultiReader(strings.NewReader(string(head)), part), u.MaxBytes)
	if err != nil {
		return conv.Part{}, tooLargeOr(err, tooLarge)
	}
	name := part.FileName()
	if len(name) > 200 || !utf8.ValidString(name) {
		name = "file"
	}
	typ := conv.PartFile
	if strings.HasPrefix(mt, "image/") {
		typ = conv.PartImage
	}
	return conv.Part{Type: typ, URL: s.URL(key), Name: name, MIME: mt, Size: size}, nil
}

func tooLargeOr(err, tooLarge error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) || errors.Is(err, ErrTooLarge) {
		return tooLarge
	}
	return err
}

// HumanBytes renders a size limit for a person.
func HumanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// Owned reports whether rawURL is one of this store's media URLs for
// tenant (the signature is checked when the file is read).
func Owned(rawURL string, tenant conv.TenantID) bool {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host != "" || u.Scheme != "" {
		return false
	}
	key, ok := strings.CutPrefix(u.Path, URLPrefix)
	if !ok || !keyRE.MatchString(key) {
		return false
	}
	owner, ok := Tenant(key)
	return ok && owner == tenant
}
