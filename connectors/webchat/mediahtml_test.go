package webchat

import (
	"bytes"
	"html"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/internal/media"
)

// mediaServer serves /v1/media/ like the node does, from a fresh store.
func mediaServer(t *testing.T) (*media.Store, http.Handler) {
	t.Helper()
	ms, err := media.Open(t.TempDir(), bytes.Repeat([]byte{7}, 32), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := &Connector{cfg: Config{Media: ms, Logger: slog.New(slog.DiscardHandler)}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/media/{key...}", c.serveMedia)
	return ms, mux
}

func put(t *testing.T, ms *media.Store, tenant conv.TenantID, mimeType, body string) string {
	t.Helper()
	key, _, err := ms.Put(tenant, mimeType, strings.NewReader(body), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return ms.URL(key)
}

func get(h http.Handler, host, target string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("GET", target, nil)
	req.Host = host
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestServeMailHTML: a mail's HTML body is served inline as HTML to the
// console's frame only, sandboxed without scripts, images limited to this
// server's media until remote=1 asks for more.
func TestServeMailHTML(t *testing.T) {
	ms, h := mediaServer(t)
	page := put(t, ms, 42, "text/html", `<p style="color:red">Hi</p><img src="https://tracker.example/p.gif">`)
	if !isHTML(strings.SplitN(page, "?", 2)[0]) {
		t.Fatalf("text/html media got URL %s, which serveMedia does not treat as HTML", page)
	}

	rec := get(h, "sb.example:8080", page)
	hd := rec.Header()
	csp := hd.Get("Content-Security-Policy")
	switch {
	case rec.Code != 200:
		t.Fatalf("GET html = %d %s", rec.Code, rec.Body)
	case hd.Get("Content-Type") != "text/html; charset=utf-8":
		t.Errorf("Content-Type = %q", hd.Get("Content-Type"))
	case hd.Get("Content-Disposition") != "":
		t.Errorf("HTML body served as a download: %q", hd.Get("Content-Disposition"))
	case hd.Get("X-Frame-Options") != "SAMEORIGIN":
		t.Errorf("X-Frame-Options = %q", hd.Get("X-Frame-Options"))
	case hd.Get("Referrer-Policy") != "no-referrer":
		t.Errorf("Referrer-Policy = %q", hd.Get("Referrer-Policy"))
	case !strings.Contains(rec.Body.String(), `style="color:red"`):
		t.Errorf("body = %s", rec.Body)
	}
	for _, want := range []string{"default-src 'none'", "style-src 'unsafe-inline'", "img-src data: http://sb.example:8080/v1/media/;",
		"; sandbox allow-popups allow-popups-to-escape-sandbox;", "frame-ancestors 'self'", "form-action 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	for _, bad := range []string{"allow-scripts", "allow-same-origin", "https:", "script-src"} {
		if strings.Contains(csp, bad) {
			t.Errorf("CSP %q contains %q", csp, bad)
		}
	}

	// The agent asked for remote images: https: joins img-src, nothing else
	// changes.
	remote := get(h, "sb.example:8080", page+"&remote=1").Header().Get("Content-Security-Policy")
	if !strings.Contains(remote, "img-src data: http://sb.example:8080/v1/media/ https:;") || !strings.Contains(remote, "; sandbox allow-popups") {
		t.Errorf("remote=1 CSP = %q", remote)
	}

	// A Host header that would smuggle a directive is left out.
	evil := get(h, "x;script-src *", page).Header().Get("Content-Security-Policy")
	if strings.Contains(evil, "script-src") || !strings.Contains(evil, "img-src data:;") {
		t.Errorf("CSP with a hostile Host = %q", evil)
	}

	// The signature still guards HTML.
	if rec := get(h, "sb.example", strings.Replace(page, "sig=", "sig=0", 1)); rec.Code != http.StatusForbidden {
		t.Errorf("bad signature = %d", rec.Code)
	}
}

// TestServeMediaDownloads: everything that is not an image or a mail's
// HTML downloads, and nothing but HTML may be framed.
func TestServeMediaDownloads(t *testing.T) {
	ms, h := mediaServer(t)
	for _, tc := range []struct {
		mime, body string
		attachment bool
	}{
		{"application/pdf", "%PDF-1.4", true},
		{"text/plain", "hello", true},
		{"message/rfc822", "Subject: x\r\n\r\nbody", true},
		{"image/png", "\x89PNG\r\n\x1a\n", false},
		{"image/jpeg", "\xff\xd8\xff", false},
		{"image/svg+xml", "<svg/>", true},
	} {
		rec := get(h, "sb.example", put(t, ms, 42, tc.mime, tc.body))
		hd := rec.Header()
		if rec.Code != 200 || (hd.Get("Content-Disposition") == "attachment") != tc.attachment {
			t.Errorf("%s: %d, Content-Disposition %q", tc.mime, rec.Code, hd.Get("Content-Disposition"))
		}
		if csp := hd.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "sandbox") {
			t.Errorf("%s: CSP %q", tc.mime, csp)
		}
	}
}

// TestServeMailHTMLInlineImages: cid: references become the media URLs the
// console passes, for this tenant's media only.
func TestServeMailHTMLInlineImages(t *testing.T) {
	ms, h := mediaServer(t)
	logo := put(t, ms, 42, "image/png", "\x89PNG\r\n\x1a\n")
	other := put(t, ms, 43, "image/png", "\x89PNG\r\n\x1a\n")
	doc := `<img src="cid:logo@acme"><img src='CID:%3Cpic%40acme%3E'><img src="cid:theirs@x"><img src="cid:unknown@x"><p>cid:logo@acme</p>`
	page := put(t, ms, 42, "text/html", doc)
	q := "&cid=" + urlEncode("logo@acme "+logo) + "&cid=" + urlEncode("<pic@acme> "+logo) +
		"&cid=" + urlEncode("theirs@x "+other) + "&cid=" + urlEncode("abs@x https://evil.example"+logo)
	rec := get(h, "sb.example", page+q)
	body := rec.Body.String()
	want := `<img src="` + html.EscapeString(logo) + `"><img src='` + html.EscapeString(logo) + `'><img src="cid:theirs@x"><img src="cid:unknown@x"><p>cid:logo@acme</p>`
	if rec.Code != 200 || body != want {
		t.Fatalf("rewritten = %d\n%s\nwant\n%s", rec.Code, body, want)
	}
	if rec.Header().Get("Last-Modified") != "" {
		t.Errorf("a rewritten body carries Last-Modified %q", rec.Header().Get("Last-Modified"))
	}
}

func urlEncode(s string) string {
	r := strings.NewReplacer("%", "%25", "&", "%26", " ", "%20", "+", "%2B", "?", "%3F", "=", "%3D", "#", "%23", "<", "%3C", ">", "%3E")
	return r.Replace(s)
}

// FuzzRewriteCIDs: whatever the stored HTML and the query hold, rewriting
// never panics, changes nothing without a usable pair, and only ever
// inserts the mapped URL.
func FuzzRewriteCIDs(f *testing.F) {
	f.Add(`<img src="cid:a@b">`, "a@b")
	f.Add(`<img src=cid:a@b>`, "<a@b>")
	f.Add(`<img src='cid:a%40b'>cid:`, "a@b")
	f.Add(`"cid:`, "")
	const u = "/v1/media/7/0123456789abcdef0123456789abcdef.png?exp=1&sig=a"
	f.Fuzz(func(t *testing.T, doc, id string) {
		if got := rewriteCIDs([]byte(doc), map[string]string{}); string(got) != doc {
			t.Fatalf("no pairs changed %q into %q", doc, got)
		}
		cids := cidMap([]string{id + " " + u, id + " /v1/media/8/0123456789abcdef0123456789abcdef.png"}, 7)
		if len(cids) > 1 {
			t.Fatalf("cidMap kept another tenant's media: %v", cids)
		}
		got := string(rewriteCIDs([]byte(doc), cids))
		if rest := strings.ReplaceAll(got, html.EscapeString(u), ""); len(rest) > len(doc) {
			t.Fatalf("rewriting %q with %v added more than the URL: %q", doc, cids, got)
		}
	})
}
