package mail

import (
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/microcosm-cc/bluemonday"
	"golang.org/x/net/html"
)

// policy is built once: building compiles regexps, and a built policy is
// safe for concurrent use (bluemonday's documented contract).
var policy = sync.OnceValue(func() *bluemonday.Policy {
	// UGC: no script, style, form, input, select, option, textarea, iframe,
	// object, no on* attributes, no style or class attributes.
	p := bluemonday.UGCPolicy()
	// cid: for inline images, which the caller maps to stored attachments.
	p.AllowURLSchemes("mailto", "http", "https", "cid")
	// A relative URL would resolve against the console's own origin.
	p.AllowRelativeURLs(false)
	p.RequireNoFollowOnLinks(true)
	p.RequireNoReferrerOnLinks(true)
	p.AddTargetBlankToFullyQualifiedLinks(true)
	return p
})

// sanitizeHTML returns s with everything the policy does not allow removed.
func sanitizeHTML(s string) string {
	return strings.TrimSpace(policy().Sanitize(s))
}

// blockTags end a line in the text rendering of HTML.
var blockTags = map[string]bool{
	"p": true, "div": true, "br": true, "tr": true, "li": true, "ul": true, "ol": true,
	"table": true, "h1": true, "h2": true, "h3": true, "h4": true, "h5": true, "h6": true,
	"hr": true, "pre": true, "section": true, "article": true, "header": true, "footer": true,
	"dt": true, "dd": true, "dl": true, "blockquote": true, "center": true, "address": true,
}

// htmlToText renders HTML as plain text for Text when a mail has no
// text/plain part: block elements end lines, blockquote lines get "> " so
// the quote folder sees them, script/style/head content is dropped.
func htmlToText(s string) string {
	z := html.NewTokenizer(strings.NewReader(s))
	var b strings.Builder
	skip, quote := 0, 0
	lineStart, pendingSpace := true, false
	newline := func() {
		b.WriteByte('\n')
		lineStart, pendingSpace = true, false
	}
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return tidyText(b.String())
		case html.TextToken:
			if skip > 0 {
				continue
			}
			txt := string(z.Text()) // Text consumes the token's text: call it once
			if startsSpace(txt) {
				pendingSpace = true
			}
			words := strings.Fields(txt)
			for i, w := range words {
				if lineStart {
					if quote > 0 {
						b.WriteString(strings.Repeat(">", quote) + " ")
					}
					lineStart = false
				} else if pendingSpace || i > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(w)
				pendingSpace = false
			}
			if len(words) > 0 && endsSpace(txt) {
				pendingSpace = true
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			name, _ := z.TagName()
			switch t := string(name); {
			case t == "script" || t == "style" || t == "head" || t == "title":
				if tt == html.StartTagToken {
					skip++
				}
			case t == "blockquote":
				quote++
				newline()
			case t == "img":
				// Keep a marker where an image was, the alt text when there is one.
				alt := ""
				for {
					k, v, more := z.TagAttr()
					if string(k) == "alt" {
						alt = strings.Join(strings.Fields(string(v)), " ")
					}
					if !more {
						break
					}
				}
				if alt != "" {
					if lineStart && quote > 0 {
						b.WriteString(strings.Repeat(">", quote) + " ")
					} else if !lineStart {
						b.WriteByte(' ')
					}
					b.WriteString("[" + alt + "]")
					lineStart, pendingSpace = false, true
				}
			case blockTags[t]:
				if !lineStart || t == "br" || t == "p" {
					newline()
				}
			case t == "td" || t == "th":
				if !lineStart {
					b.WriteByte('\t')
					pendingSpace = false
				}
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			switch t := string(name); {
			case t == "script" || t == "style" || t == "head" || t == "title":
				if skip > 0 {
					skip--
				}
			case t == "blockquote":
				if quote > 0 {
					quote--
				}
				newline()
			case blockTags[t]:
				if !lineStart {
					newline()
				}
			}
		}
	}
}

func startsSpace(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return unicode.IsSpace(r)
}

func endsSpace(s string) bool {
	r, _ := utf8.DecodeLastRuneInString(s)
	return unicode.IsSpace(r)
}

// tidyText trims line ends and leaves at most one blank line in a row.
func tidyText(s string) string {
	lines := strings.Split(s, "\n")
	out := lines[:0]
	blank := 0
	for _, l := range lines {
		l = strings.TrimRight(l, " \t\u00a0")
		if strings.TrimSpace(l) == "" || isBareQuote(l) {
			blank++
			if blank > 1 {
				continue
			}
			l = strings.TrimSpace(l)
		} else {
			blank = 0
		}
		out = append(out, l)
	}
	return strings.Trim(strings.Join(out, "\n"), "\n")
}

// isBareQuote: a line of only ">" marks, left by an empty block inside a blockquote.
func isBareQuote(l string) bool {
	l = strings.TrimSpace(l)
	return l != "" && strings.Trim(l, "> ") == ""
}
