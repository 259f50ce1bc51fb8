package webchat

// Serving a mail's HTML body (text/html media) to the agent
// console's sandboxed frame.
//
// The bytes were sanitized at ingest (no script, no style element, no
// event handler, no javascript: URL). The response does not trust that
// alone; defence in depth:
//
//   - Content-Security-Policy "sandbox" (and the console's <iframe sandbox>)
//     without allow-scripts or allow-same-origin: the document runs no
//     script and has an opaque origin, so it can reach neither the
//     console's storage (the agent's token) nor the API as the agent.
//     Popups are allowed, and escape the sandbox, so a link the agent
//     clicks opens in a normal new tab; forms go nowhere (form-action).
//   - default-src 'none' with style-src 'unsafe-inline' (mail layout lives
//     in style attributes) and img-src data: plus this server's media path
//     only. Remote images (tracking pixels, "read" receipts) load only when
//     the URL carries remote=1, which the console adds when the agent asks:
//     then img-src also allows https:. The flag is not signed: it only
//     loosens which images this one document may show.
//   - frame-ancestors 'self' (X-Frame-Options SAMEORIGIN): only the console
//     may frame it. Every other media file keeps frame-ancestors 'none'.
//   - Referrer-Policy no-referrer: a remote image request does not carry
//     the signed media URL to the sender's server.
//
// Inline images: the HTML names them "cid:<content-id>"; the message's
// image/file parts carry MediaID "cid:<content-id>" and a signed media URL.
// The server keeps no index from one to the other, so the console passes
// the pairs it knows as cid=<content-id> <media url> query values and the
// response rewrites matching cid: attribute values to those URLs. A pair
// is used only when the URL is this tenant's media (media.Owned); loading
// it still needs its own valid signature. Unmatched cid: URLs stay and
// load nothing (img-src does not allow the scheme).

import (
	"bytes"
	"html"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/internal/media"
)

// Bounds on rewriting: a larger body is served as stored, and cid values
// beyond these are ignored.
const (
	maxHTMLRewrite = 8 << 20
	maxCIDLen      = 512
	maxCIDURL      = 2048
)

// isHTML reports whether media is a mail's HTML body (media.Put names a
// text/html file .ehtml, .htm or .html, depending on the MIME table).
func isHTML(key string) bool { return mediaType(key) == "text/html" }

// hostSource matches a Host header that is safe to put in a CSP source
// expression (no spaces, semicolons, commas or quotes).
var hostSource = regexp.MustCompile(`^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$`)

// htmlCSP is the policy of a mail's HTML body served to host. An http:
// source also matches https (CSP3), so it holds behind a TLS proxy.
func htmlCSP(host string, remote bool) string {
	img := "data:"
	if hostSource.MatchString(host) {
		img += " http://" + host + media.URLPrefix
	}
	if remote {
		img += " https:"
	}
	return "default-src 'none'; style-src 'unsafe-inline'; img-src " + img +
		"; sandbox allow-popups allow-popups-to-escape-sandbox; form-action 'none'; base-uri 'none'; frame-ancestors 'self'"
}

func (c *Connector) serveHTML(w http.ResponseWriter, r *http.Request, key string, f *os.File, st fs.FileInfo) {
	q := r.URL.Query()
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", htmlCSP(r.Host, q.Get("remote") == "1"))
	h.Set("X-Frame-Options", "SAMEORIGIN")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	tenant, _ := media.Tenant(key)
	cids := cidMap(q["cid"], tenant)
	if len(cids) == 0 || st.Size() > maxHTMLRewrite {
		http.ServeContent(w, r, key, st.ModTime(), f)
		return
	}
	b, err := io.ReadAll(io.LimitReader(f, maxHTMLRewrite))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	// No Last-Modified: the body depends on the query.
	http.ServeContent(w, r, key, time.Time{}, bytes.NewReader(rewriteCIDs(b, cids)))
}

// cidMap reads "<content-id> <media url>" pairs, keeping those whose URL is
// media of tenant, at most conv.MaxParts of them.
func cidMap(values []string, tenant conv.TenantID) map[string]string {
	m := make(map[string]string)
	for _, v := range values[:min(len(values), conv.MaxParts)] {
		i := strings.LastIndexByte(v, ' ')
		if i <= 0 {
			continue
		}
		id, u := cleanCID(v[:i]), v[i+1:]
		if id == "" || len(id) > maxCIDLen || len(u) > maxCIDURL || !media.Owned(u, tenant) {
			continue
		}
		m[id] = u
	}
	return m
}

// cleanCID turns "cid:<a@b>", "<a@b>" or "a@b" into "a@b".
func cleanCID(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 4 && strings.EqualFold(s[:4], "cid:") {
		s = s[4:]
	}
	return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "<"), ">")
}

// rewriteCIDs replaces each cid: URL in doc that starts an attribute value
// (after a quote or an equals sign) and names a key of cids with that
// key's URL, HTML-escaped. The value is matched as written, after entity
// decoding, and after percent decoding (RFC 2392 cid URLs are
// URL-encoded). It scans doc once; each value is read at most maxCIDLen
// bytes far.
func rewriteCIDs(doc []byte, cids map[string]string) []byte {
	lower := make([]byte, len(doc))
	for i, b := range doc {
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		lower[i] = b
	}
	var out bytes.Buffer
	last, i := 0, 0
	for {
		j := bytes.Index(lower[i:], []byte("cid:"))
		if j < 0 {
			break
		}
		start := i + j
		i = start + len("cid:")
		if start == 0 {
			continue
		}
		window := doc[i:min(len(doc), i+maxCIDLen+1)]
		var k int
		switch doc[start-1] {
		case '"', '\'':
			k = bytes.IndexByte(window, doc[start-1])
		case '=':
			k = bytes.IndexAny(window, " \t\n\r\f>")
			if k < 0 && i+len(window) == len(doc) {
				k = len(window)
			}
		default:
			continue
		}
		if k < 0 || k > maxCIDLen {
			continue
		}
		u, ok := lookupCID(string(doc[i:i+k]), cids)
		if !ok {
			continue
		}
		out.Write(doc[last:start])
		out.WriteString(html.EscapeString(u))
		last, i = i+k, i+k
	}
	if last == 0 {
		return doc
	}
	out.Write(doc[last:])
	return out.Bytes()
}

func lookupCID(raw string, cids map[string]string) (string, bool) {
	v := cleanCID(html.UnescapeString(raw))
	if u, ok := cids[v]; ok {
		return u, true
	}
	if d, err := url.PathUnescape(v); err == nil && d != v {
		u, ok := cids[cleanCID(d)]
		return u, ok
	}
	return "", false
}
