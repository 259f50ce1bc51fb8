package mail

import (
	"bytes"
	"io"
	"mime"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/encoding/traditionalchinese"
)

// charsetReader converts label-encoded bytes to UTF-8. The Chinese and
// Japanese labels are resolved here rather than through the global that
// go-message's charset package sets, so decoding does not depend on import
// order or on another package replacing message.CharsetReader:
//   - gb2312, gbk, cp936 and friends decode as GB18030, their superset: mail
//     labelled gb2312 routinely carries GBK-only characters;
//   - big5 variants decode as Big5 (WHATWG's, which includes HKSCS);
//   - everything else goes to charset.Reader (IANA and WHATWG labels).
func charsetReader(label string, r io.Reader) (io.Reader, error) {
	switch strings.ToLower(strings.Trim(strings.TrimSpace(label), `"'`)) {
	case "", "utf-8", "utf8", "us-ascii", "ascii", "ansi_x3.4-1968":
		return r, nil
	case "gb2312", "gbk", "x-gbk", "cp936", "ms936", "windows-936", "euc-cn", "x-euc-cn", "csgb2312", "gb_2312-80", "chinese", "gb18030":
		return simplifiedchinese.GB18030.NewDecoder().Reader(r), nil
	case "big5", "big5-hkscs", "x-big5", "cp950", "csbig5", "cn-big5", "x-x-big5":
		return traditionalchinese.Big5.NewDecoder().Reader(r), nil
	case "iso-2022-jp", "csiso2022jp":
		return japanese.ISO2022JP.NewDecoder().Reader(r), nil
	}
	return charset.Reader(label, r)
}

// wordDecoder decodes RFC 2047 encoded-words in any charset charsetReader knows.
var wordDecoder = &mime.WordDecoder{CharsetReader: charsetReader}

// decodeBytes converts b from label to UTF-8; an unknown label or bad bytes
// leave valid UTF-8 with replacement characters, never an error.
func decodeBytes(label string, b []byte) string {
	r, err := charsetReader(label, bytes.NewReader(b))
	if err != nil {
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	out, err := io.ReadAll(r)
	if err != nil && len(out) == 0 {
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	return strings.ToValidUTF8(string(out), "\uFFFD")
}

// decodeHeaderText decodes a header value: raw 8-bit bytes in fallback
// charset (the message's own, when it declares one), then encoded-words.
// The result is cleaned by cleanHeader.
func decodeHeaderText(raw, fallback string) string {
	if !utf8.ValidString(raw) && fallback != "" {
		raw = decodeBytes(fallback, []byte(raw))
	}
	s, err := wordDecoder.DecodeHeader(raw)
	if err != nil {
		s = raw
	}
	return cleanHeader(s)
}

// cleanHeader makes a header value safe to show and to copy into a header we
// write: valid UTF-8, CR, LF, every other control character and the Unicode
// line and paragraph separators turned into spaces, runs of spaces collapsed.
// RFC 2047 can smuggle CR/LF in an encoded-word; this is where it dies.
func cleanHeader(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		if isBidiControl(r) || r == '\uFEFF' {
			continue
		}
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || unicode.IsSpace(r) {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// cleanBody normalizes body text: valid UTF-8, LF line ends, no control
// characters other than tab and newline.
func cleanBody(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r == '\r':
			b.WriteByte('\n')
		case r == '\n' || r == '\t':
			b.WriteRune(r)
		case unicode.IsControl(r) || r == '\uFEFF':
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// isBidiControl reports the explicit direction marks and overrides: in a
// file name or a display name they disguise what follows ("invoice\u202Efdp.exe").
func isBidiControl(r rune) bool {
	return r == '\u200E' || r == '\u200F' || (r >= '\u202A' && r <= '\u202E') || (r >= '\u2066' && r <= '\u2069')
}
