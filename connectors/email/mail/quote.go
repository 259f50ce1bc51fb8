package mail

import (
	"regexp"
	"strings"
)

// foldQuotes splits a body into the new text and the quoted history plus
// signature that follows it. The cut is the earliest of:
//   - a reply attribution: "On … wrote:" (Gmail, possibly wrapped over two
//     lines), "… 写道：" / "在 … 写道：" (Gmail and others in Chinese);
//   - an "original message" separator: "-----Original Message-----",
//     "------------------ 原始邮件 ------------------" (Foxmail, QQ Mail),
//     "----- Original -----";
//   - an Outlook separator line of underscores;
//   - an Outlook header block: "From:" / "发件人:" followed within a few lines
//     by "Sent:" / "Date:" / "发送时间:" / "日期:";
//   - a signature separator "-- " (or "--");
//   - a trailing block of ">" lines.
//
// Forwarded messages ("---------- Forwarded message ---------") are content
// the customer meant to send and are not folded. Nothing is folded when the
// text before the cut would be blank: the agent must see something.
func foldQuotes(text string) (body, quoted string) {
	text = strings.Trim(text, "\n")
	if text == "" {
		return "", ""
	}
	lines := strings.Split(text, "\n")
	cut := -1
	for i := range lines {
		if quoteStarts(lines, i) {
			cut = i
			break
		}
	}
	if t := trailingQuote(lines); t >= 0 && (cut < 0 || t < cut) {
		cut = t
	}
	if cut < 0 {
		return tidyEnds(text), ""
	}
	body = tidyEnds(strings.Join(lines[:cut], "\n"))
	if strings.TrimSpace(body) == "" {
		return tidyEnds(text), ""
	}
	return body, tidyEnds(strings.Join(lines[cut:], "\n"))
}

func tidyEnds(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "-- " { // the signature separator keeps its space (RFC 3676)
			lines[i] = strings.TrimRight(l, " \t")
		}
	}
	return strings.Trim(strings.Join(lines, "\n"), "\n")
}

var (
	reOnWrote       = regexp.MustCompile(`(?i)^\s*On\s.{4,300}\bwrote:\s*$`)
	reOnStart       = regexp.MustCompile(`(?i)^\s*On\s.{4,200}$`)
	reWrote         = regexp.MustCompile(`(?i)\bwrote:\s*$`)
	reZhWrote       = regexp.MustCompile(`^.{0,300}(写道|寫道)\s*[:：]\s*$`)
	reSeparator     = regexp.MustCompile(`(?i)^\s*-{2,}\s*(original message|original|原始邮件|原始郵件|原邮件|原郵件)\s*-{2,}\s*$`)
	reUnderscores   = regexp.MustCompile(`^\s*_{20,}\s*$`)
	reFromHeader    = regexp.MustCompile(`(?i)^\s*\*?\s*(from|发件人|寄件者|寄件人)\s*\*?\s*[:：]`)
	reSentHeader    = regexp.MustCompile(`(?i)^\s*\*?\s*(sent|date|发送时间|发送日期|日期|时间|寄件日期|傳送時間)\s*\*?\s*[:：]`)
	reForwarded     = regexp.MustCompile(`(?i)^\s*-{2,}\s*(forwarded message|转发的邮件|轉寄的郵件|begin forwarded message)\s*-{0,}\s*$|^\s*Begin forwarded message:\s*$`)
	headerLookahead = 5
)

func quoteStarts(lines []string, i int) bool {
	l := strings.ReplaceAll(lines[i], "\u00a0", " ")
	switch {
	case l == "-- " || l == "--":
		return true
	case reOnWrote.MatchString(l), reZhWrote.MatchString(l), reSeparator.MatchString(l), reUnderscores.MatchString(l):
		return true
	case i+1 < len(lines) && reOnStart.MatchString(l) && !reWrote.MatchString(l) && reWrote.MatchString(lines[i+1]) && len(lines[i+1]) < 200:
		return true // Gmail wraps a long attribution: "On …, Name <\nname@example.com> wrote:"
	case reFromHeader.MatchString(l):
		if afterForward(lines, i) {
			return false
		}
		for j := i + 1; j < len(lines) && j <= i+headerLookahead; j++ {
			if reSentHeader.MatchString(strings.ReplaceAll(lines[j], "\u00a0", " ")) {
				return true
			}
		}
	}
	return false
}

// afterForward reports whether the header block at i is the one a forward
// marker introduces.
func afterForward(lines []string, i int) bool {
	for j := i - 1; j >= 0 && j >= i-2; j-- {
		if reForwarded.MatchString(lines[j]) {
			return true
		}
	}
	return false
}

// trailingQuote returns the first line of the ">" block that ends the text
// (blank lines inside and after it allowed), or -1. Inline replies, where
// new text follows a quote, are left alone.
func trailingQuote(lines []string) int {
	start := -1
	for i := len(lines) - 1; i >= 0; i-- {
		t := strings.TrimSpace(lines[i])
		switch {
		case strings.HasPrefix(t, ">"):
			start = i
		case t == "":
		default:
			return start
		}
	}
	return start
}
