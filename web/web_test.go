package web

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"
)

// assets lists every embedded file with the data-testid values a browser
// test relies on, so renaming one breaks here first.
var assets = []struct {
	path    string
	testIDs []string
}{
	{"widget.js", []string{"sb-launcher", "sb-panel", "sb-input", "sb-send", "sb-msg", "sb-offline", "sb-reconnecting", "sb-error"}},
	{"console/index.html", []string{"login-tenant", "login-email", "login-password", "login-submit",
		"tab-mine", "tab-unassigned", "tab-resolved", "composer", "send", "resolve", "assign", "presence", "reconnecting"}},
	{"console/console.js", []string{"conv-row", "conv-unread", "msg", "recall"}},
	{"console/console.css", nil},
	{"demo.html", nil},
	{"demo.css", nil},
}

func TestFSHasAssets(t *testing.T) {
	for _, a := range assets {
		t.Run(a.path, func(t *testing.T) {
			b, err := fs.ReadFile(FS, a.path)
			if err != nil {
				t.Fatalf("embedded file: %v", err)
			}
			if len(b) == 0 {
				t.Fatal("embedded file is empty")
			}
			for _, id := range a.testIDs {
				if !strings.Contains(string(b), `"`+id+`"`) && !strings.Contains(string(b), `'`+id+`'`) {
					t.Errorf("data-testid %q not found", id)
				}
			}
		})
	}
}

func TestDemoPage(t *testing.T) {
	b, err := fs.ReadFile(FS, "demo.html")
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, want := range []string{`src="/widget.js"`, `data-channel="` + DemoPlaceholder + `"`, `href="/demo.css"`} {
		if !strings.Contains(page, want) {
			t.Errorf("demo.html lacks %s", want)
		}
	}
}

// namespaceURIs are identifiers that look like URLs but are never fetched.
var namespaceURIs = map[string]bool{"http://www.w3.org/2000/svg": true}

var (
	absURL      = regexp.MustCompile(`(?i)\bhttps?://[^\s"'<>()\x60]+`)
	relProtoURL = regexp.MustCompile(`(?i)(?:src|href|action)\s*=\s*["']?//|url\(\s*["']?//|@import\s+["']?//`)
	htmlSinks   = regexp.MustCompile(`\.innerHTML\b|\.outerHTML\b|insertAdjacentHTML|document\.write|\beval\s*\(|new\s+Function\s*\(`)
	inlineCode  = regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>\s*[^<\s]|<script(?:(?:\s+[a-z-]+(?:="[^"]*")?)*)\s*>\s*</script>|\son[a-z]+\s*=|\sstyle\s*=|<style`)
)

// externalRefs returns the references in src that point at another origin.
func externalRefs(src string) []string {
	var bad []string
	for _, u := range absURL.FindAllString(src, -1) {
		if !namespaceURIs[u] {
			bad = append(bad, u)
		}
	}
	return append(bad, relProtoURL.FindAllString(src, -1)...)
}

// inlineScript reports inline code (inline <script> bodies, scripts without
// src, on* handlers, style attributes or elements) that a strict CSP blocks.
func inlineScript(page string) []string {
	var bad []string
	for _, m := range inlineCode.FindAllString(page, -1) {
		if strings.HasPrefix(strings.ToLower(m), "<script") && strings.Contains(m, "src=") && strings.HasSuffix(m, "</script>") {
			continue // <script src=...></script>
		}
		bad = append(bad, m)
	}
	return bad
}

func TestCheckers(t *testing.T) {
	cases := []struct {
		name  string
		check func(string) []string
		src   string
		bad   bool
	}{
		{"cdn script", externalRefs, `<script src="https://cdn.example.com/x.js"></script>`, true},
		{"http image", externalRefs, `img.src = 'http://tracker.example/p.gif'`, true},
		{"protocol relative", externalRefs, `<link href="//fonts.example.com/a.css">`, true},
		{"css import", externalRefs, `@import "//x.example/y.css";`, true},
		{"svg namespace", externalRefs, `createElementNS('http://www.w3.org/2000/svg', 'svg')`, false},
		{"same origin", externalRefs, `<script src="/widget.js"></script> fetch('/v1/agents')`, false},
		{"escaped regex", externalRefs, `const re = /https?:\/\/\S+/g;`, false},
		{"inline script", inlineScript, "<script>alert(1)</script>", true},
		{"inline handler", inlineScript, `<button onclick="go()">`, true},
		{"style attr", inlineScript, `<div style="color:red">`, true},
		{"style element", inlineScript, `<style>p{}</style>`, true},
		{"external script", inlineScript, `<script src="/console/console.js" defer></script>`, false},
		{"script with src and body", inlineScript, `<script src="/a.js">alert(1)</script>`, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.check(c.src); (len(got) > 0) != c.bad {
				t.Errorf("check(%q) = %q, want flagged=%v", c.src, got, c.bad)
			}
		})
	}
	for src, bad := range map[string]bool{
		`el.innerHTML = data`:           true,
		`el.outerHTML=x`:                true,
		`el.insertAdjacentHTML('x', y)`: true,
		`document.write(x)`:             true,
		`eval(s)`:                       true,
		`new Function('a', b)`:          true,
		`el.textContent = data`:         false,
		`el.append(text)`:               false,
	} {
		if htmlSinks.MatchString(src) != bad {
			t.Errorf("htmlSinks on %q: want flagged=%v", src, bad)
		}
	}
}

func walk(t *testing.T, fn func(path, body string)) {
	t.Helper()
	n := 0
	err := fs.WalkDir(FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(FS, path)
		if err != nil {
			return err
		}
		n++
		fn(path, string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < len(assets) {
		t.Fatalf("walked %d files, want at least %d", n, len(assets))
	}
}

func TestNoExternalOrigins(t *testing.T) {
	walk(t, func(path, body string) {
		if bad := externalRefs(body); len(bad) > 0 {
			t.Errorf("%s references other origins: %q", path, bad)
		}
	})
}

func TestNoHTMLInjectionSinks(t *testing.T) {
	walk(t, func(path, body string) {
		if !strings.HasSuffix(path, ".js") {
			return
		}
		if bad := htmlSinks.FindAllString(body, -1); len(bad) > 0 {
			t.Errorf("%s uses HTML sinks %q; build nodes and set textContent instead", path, bad)
		}
	})
}

func TestPagesWorkUnderStrictCSP(t *testing.T) {
	walk(t, func(path, body string) {
		if !strings.HasSuffix(path, ".html") {
			return
		}
		if bad := inlineScript(body); len(bad) > 0 {
			t.Errorf("%s has inline code a strict Content-Security-Policy blocks: %q", path, bad)
		}
	})
}
