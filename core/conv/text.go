package conv

import "unicode/utf8"

// Clip cuts s to at most n bytes, backing off to the start of a rune so
// that no character is split: for fields with a byte limit (names,
// subjects, status reasons).
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Shorten is Clip with "…" after it when s was cut: for text shown to a
// person (error messages, logs).
func Shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return Clip(s, n) + "…"
}
