package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/secret"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// pathLog records the paths a test server was asked for.
type pathLog struct {
	mu    sync.Mutex
	paths []string
}

func (l *pathLog) add(p string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.paths = append(l.paths, p)
}

func (l *pathLog) has(p string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.paths, p)
}

func (l *pathLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.paths, ", ")
}

// inProcessNode is a node wired in the test process (not through `serve`)
// so the test can publish envelopes on its bus and put files in its media,
// as a connector would. It serves on an httptest server.
type inProcessNode struct {
	*node
	base     string
	password string // the demo agent's
	tenant   conv.TenantID
	// requests logs each media request as "<Sec-Fetch-Site> <Sec-Fetch-Dest>
	// <path>": who in the browser asked for which file.
	requests pathLog
}

func startInProcessNode(t *testing.T) *inProcessNode {
	t.Helper()
	t.Setenv(secret.EnvVar, "")
	var c config
	if err := parse(newFlags("serve", &c, io.Discard), []string{"--data", t.TempDir(), "--log-level", "warn"}); err != nil {
		t.Fatal(err)
	}
	c.NodeID, c.Postgres, c.Redis, c.NATS = 0, "", "", "" // the embedded default
	var logs syncBuffer
	ctx, stop := context.WithCancel(context.Background())
	n, _, err := wire(ctx, c, c.logger(&logs))
	if err != nil {
		stop()
		t.Fatalf("wire: %v", err)
	}
	d, err := createDemo(ctx, n.store, n.ids, n.auth)
	if err != nil {
		stop()
		n.close()
		t.Fatalf("demo: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- n.serveWorkers(ctx) }()
	select {
	case <-n.router.Running():
	case err := <-done:
		stop()
		n.close()
		t.Fatalf("workers: %v\n%s", err, logs.String())
	}
	ipn := &inProcessNode{node: n, password: d.Password, tenant: d.Channel.TenantID}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/media/") {
			ipn.requests.add(r.Header.Get("Sec-Fetch-Site") + " " + r.Header.Get("Sec-Fetch-Dest") + " " + r.URL.Path)
		}
		n.api.ServeHTTP(w, r)
	}))
	ipn.base = srv.URL
	t.Cleanup(func() {
		srv.Close()
		stop()
		<-done
		n.close()
		if t.Failed() {
			t.Logf("node log:\n%s", logs.String())
		}
	})
	return ipn
}

// putMedia stores a file as a connector does and returns its signed URL.
func (n *inProcessNode) putMedia(t *testing.T, mimeType string, body []byte) string {
	t.Helper()
	key, _, err := n.media.Put(n.tenant, mimeType, bytes.NewReader(body), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return n.media.URL(key)
}

// get fetches path from the node and returns the answer with its body.
func (n *inProcessNode) get(t *testing.T, path, bearer string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", n.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// onePixelPNG is a valid 1×1 PNG.
var onePixelPNG, _ = base64.StdEncoding.DecodeString("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")

// TestBrowserEmailConversation drives headless Chromium through an email
// conversation in the console: a mail (headers, text, quoted history, an
// HTML body with an inline image, a remote image and a script that a
// broken sanitizer let through, an attachment) arrives through the
// loopback channel; the console shows its header block, the quoted text on
// request, the HTML in a sandboxed frame where the script does not run, the
// inline image comes from media and the remote image loads only when the
// agent asks; the composer is prefilled with the recipients and "Re:"
// subject, and the reply (with an attachment) stores the email part the
// agent edited. SWITCHBOARD_TEST_BROWSER holds the Chromium binary.
func TestBrowserEmailConversation(t *testing.T) {
	chromium := testenv.Require(t, "SWITCHBOARD_TEST_BROWSER")
	n := startInProcessNode(t)

	// The sender's web server: remote images and what a script would call.
	var remoteHits pathLog
	remote := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		remoteHits.add(r.URL.Path)
		w.Header().Set("Content-Type", "image/png")
		w.Write(onePixelPNG)
	}))
	defer remote.Close()

	ctx := context.Background()
	ch := conv.Channel{ID: conv.NewID[conv.ChannelID](n.ids), TenantID: n.tenant, Kind: conv.KindTest, Name: "Support mailbox", CreatedAt: time.Now().UTC()}
	if err := n.store.Tx(ctx, n.tenant, func(tx storage.Tx) error { return tx.CreateChannel(ctx, ch) }); err != nil {
		t.Fatal(err)
	}
	photo := n.putMedia(t, "image/png", onePixelPNG)
	invoice := n.putMedia(t, "application/pdf", []byte("%PDF-1.4\n% invoice\n"))
	raw := n.putMedia(t, "message/rfc822", []byte("Subject: Order #1042 arrived damaged\r\n\r\nHello\r\n"))
	page := n.putMedia(t, "text/html", []byte(`<!doctype html><html><body>`+
		`<p style="color:#333">Hello, the kettle arrived <b>with a dent</b>.</p>`+
		`<img src="cid:photo1@customer.example" alt="photo">`+
		`<img src="`+remote.URL+`/remote.png" alt="tracker">`+
		`<script>new Image().src="`+remote.URL+`/script-ran";top.__pwned=1;parent.document.title="pwned";</script>`+
		`<img src="x" onerror="new Image().src='`+remote.URL+`/script-ran';top.__pwned=2">`+
		`</body></html>`))
	const subject = "Order #1042 arrived damaged"
	mail := conv.Inbound{TenantID: n.tenant, ChannelID: ch.ID, ExternalID: "sha256:mail-1",
		From: conv.Identity{Kind: "email", ExternalID: "ann@customer.example"}, FromName: "Ann Customer", SentAt: time.Now().UTC(),
		Parts: []conv.Part{
			{Type: conv.PartEmail, Email: &conv.Email{Subject: subject, From: "Ann Customer <ann@customer.example>",
				To: []string{"Acme Support <support@acme.example>"}, Cc: []string{"Bob Buyer <bob@customer.example>"},
				MessageID: "<m1@customer.example>", HTML: page, Raw: raw, Quoted: "On Monday, Acme wrote:\n> Your order has shipped."}},
			{Type: conv.PartText, Text: "Hello, the kettle arrived with a dent. Photo attached."},
			{Type: conv.PartImage, URL: photo, MediaID: "cid:photo1@customer.example", Name: "photo.png", MIME: "image/png", Size: int64(len(onePixelPNG))},
			{Type: conv.PartFile, URL: invoice, Name: "invoice.pdf", MIME: "application/pdf", Size: 19},
		}}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Headless, chromedp.IgnoreCertErrors,
		chromedp.WindowSize(1280, 900), chromedp.Flag("disable-dev-shm-usage", true))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	tab, cancelTab := chromedp.NewContext(allocCtx)
	defer cancelTab()
	bctx, cancel := context.WithTimeout(tab, 120*time.Second)
	defer cancel()
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		for _, a := range actions {
			if _, err := chromedp.Run(bctx, a); err != nil {
				page, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`(window.__errs || []).join("\\n") + "\\n---\\n" + document.body.innerText.slice(0, 4000)`))
				t.Fatalf("%s: %v\npage text:\n%s", what, err, page)
			}
		}
	}
	evalString := func(what, js string) string {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
	check := func(what, js string) {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Evaluate[bool](js))
		if err != nil || !v {
			page, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector('[data-testid=history]') ? document.querySelector('[data-testid=history]').innerText.slice(0, 3000) : document.body.innerText.slice(0, 3000)`))
			t.Fatalf("%s: got %v, %v\nhistory:\n%s", what, v, err, page)
		}
	}
	poll := func(js string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := chromedp.Poll[bool](js, chromedp.WithPollingTimeout(30*time.Second))(ctx, tg)
			return chromedp.Void{}, err
		}
	}
	js := func(s string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := chromedp.Evaluate[any](s)(ctx, tg)
			return chromedp.Void{}, err
		}
	}
	text := func(testid string) string {
		return evalString(testid, `(() => { const e = document.querySelector('[data-testid=msg][data-direction=in] [data-testid=`+testid+`]'); return e ? e.textContent : '<none>'; })()`)
	}

	run("console login",
		chromedp.Navigate(n.base+"/console/"),
		chromedp.WaitVisible(`[data-testid=login-tenant]`),
		js(`window.__errs = []; window.addEventListener('error', e => window.__errs.push(e.message + ' @' + e.lineno)); window.addEventListener('unhandledrejection', e => window.__errs.push('rejection: ' + e.reason)); true`),
		chromedp.SendKeys(`[data-testid=login-tenant]`, "demo"),
		chromedp.SendKeys(`[data-testid=login-email]`, "agent@demo.local"),
		chromedp.SendKeys(`[data-testid=login-password]`, n.password),
		chromedp.Click(`[data-testid=login-submit]`),
		chromedp.WaitVisible(`[data-testid=presence][data-status=online]`),
	)
	if err := n.pub.PublishInbound(ctx, mail); err != nil {
		t.Fatal(err)
	}

	// The list shows the subject; the conversation opens on the mail's
	// header block.
	run("the mail reaches the console",
		chromedp.WaitVisible(`[data-testid=conv-row]`),
		poll(`[...document.querySelectorAll('[data-testid=conv-subject]')].some(e => e.textContent === `+jsString(subject)+`)`),
		chromedp.Click(`[data-testid=conv-row]`),
		poll(`!!document.querySelector('[data-testid=msg][data-direction=in] [data-testid=email-head]')`),
	)
	convID := evalString("conversation id", `document.querySelector('[data-testid=conv-row]').dataset.id`)
	for testid, want := range map[string]string{
		"email-subject": subject,
		"email-from":    "Ann Customer <ann@customer.example>",
		"email-to":      "Acme Support <support@acme.example>",
		"email-cc":      "Bob Buyer <bob@customer.example>",
	} {
		if got := text(testid); got != want {
			t.Errorf("%s shows %q, want %q", testid, got, want)
		}
	}
	check("the text is shown and the attachments offered", `(() => {
		const m = document.querySelector('[data-testid=msg][data-direction=in]');
		const img = m.querySelector('[data-testid=email-attachments] img');
		const pdf = [...m.querySelectorAll('[data-testid=email-attachments] a[download]')].find(a => a.textContent.includes('invoice.pdf'));
		return m.textContent.includes('the kettle arrived with a dent') && !!img && img.src.includes('/v1/media/') && !!pdf && pdf.getAttribute('href').includes('/v1/media/');
	})()`)
	for _, u := range []string{invoice, raw} {
		if resp, _ := n.get(t, u, ""); resp.StatusCode != 200 || resp.Header.Get("Content-Disposition") != "attachment" {
			t.Errorf("GET %s = %d, Content-Disposition %q: attachments must download", u, resp.StatusCode, resp.Header.Get("Content-Disposition"))
		}
	}

	// Quoted history is folded until asked for.
	check("quoted text folded", `document.querySelector('[data-testid=email-quoted]').hidden`)
	run("show quoted text", chromedp.Click(`[data-testid=email-quoted-toggle]`),
		poll(`(() => { const q = document.querySelector('[data-testid=email-quoted]'); return !q.hidden && q.textContent.includes('Your order has shipped'); })()`))

	// The HTML body: a sandboxed frame without scripts; the script in it
	// did not run; the inline image is this server's media; the remote one
	// is not loaded.
	check("no frame before the agent asks", `!document.querySelector('[data-testid=email-frame]')`)
	run("view original formatting", chromedp.Click(`[data-testid=email-html-toggle]`),
		poll(`!!document.querySelector('[data-testid=email-frame][data-loaded]')`))
	check("the frame is sandboxed without scripts or same origin", `(() => {
		const s = document.querySelector('[data-testid=email-frame]').getAttribute('sandbox');
		return s !== null && !/allow-scripts|allow-same-origin/.test(s);
	})()`)
	check("the mail's script did not run", `document.title !== 'pwned' && window.__pwned === undefined`)
	if remoteHits.has("/remote.png") || remoteHits.has("/script-ran") {
		t.Fatalf("the sender's server was reached before the agent asked: %s", &remoteHits)
	}
	src := evalString("frame src", `(() => { const u = new URL(document.querySelector('[data-testid=email-frame]').src); return u.origin === location.origin ? u.pathname + u.search : u.href; })()`)
	resp, body := n.get(t, src, "")
	if csp := resp.Header.Get("Content-Security-Policy"); resp.StatusCode != 200 || !strings.Contains(csp, "frame-ancestors 'self'") || strings.Contains(csp, "https:") {
		t.Fatalf("frame document = %d, CSP %q", resp.StatusCode, csp)
	}
	if !strings.Contains(string(body), `src="`+html.EscapeString(photo)+`"`) || strings.Contains(string(body), "cid:photo1") {
		t.Fatalf("the frame's document does not show the inline image from media:\n%s", body)
	}
	// The frame (an opaque origin: cross-site to the server) loaded it.
	photoPath, _, _ := strings.Cut(photo, "?")
	testenv.WaitFor(t, 30*time.Second, "the inline image loaded in the frame; media requests: "+n.requests.String(),
		func() bool { return n.requests.has("cross-site image " + photoPath) })

	// The agent asks for remote images: the frame reloads allowing them;
	// the script still does not run.
	run("show remote images", chromedp.Click(`[data-testid=email-remote]`),
		poll(`(() => { const f = document.querySelector('[data-testid=email-frame]'); return !!document.querySelector('[data-testid=email-remote-on]') && f.src.includes('remote=1') && f.hasAttribute('data-loaded'); })()`))
	testenv.WaitFor(t, 30*time.Second, "the remote image after Show remote images", func() bool { return remoteHits.has("/remote.png") })
	check("the mail's script still did not run", `document.title !== 'pwned' && window.__pwned === undefined`)
	if remoteHits.has("/script-ran") {
		t.Fatalf("the mail's script ran: %s", &remoteHits)
	}

	// The composer: prefilled from the mail, editable, and kept after
	// sending.
	for id, want := range map[string]string{
		"email-to-input":      "Ann Customer <ann@customer.example>",
		"email-cc-input":      "Acme Support <support@acme.example>, Bob Buyer <bob@customer.example>",
		"email-subject-input": "Re: " + subject,
	} {
		if got := evalString(id, `document.querySelector('[data-testid=`+id+`]').value`); got != want {
			t.Errorf("%s = %q, want %q", id, got, want)
		}
	}
	check("the email fields are shown", `!document.querySelector('[data-testid=email-fields]').hidden`)
	const answer = "Sorry about that!\nA new kettle is on its way."
	label := filepath.Join(t.TempDir(), "return-label.pdf")
	if err := os.WriteFile(label, []byte("%PDF-1.4\n% return label\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run("reply by mail with an attachment",
		js(`(() => { const cc = document.querySelector('[data-testid=email-cc-input]'); cc.value = 'Bob Buyer <bob@customer.example>'; cc.dispatchEvent(new Event('input', {bubbles: true})); return true; })()`),
		chromedp.SetUploadFiles(`[data-testid=attach]`, []string{label}),
		poll(`[...document.querySelectorAll('[data-testid=staged-file]')].some(e => e.textContent.includes('return-label.pdf'))`),
		chromedp.SendKeys(`[data-testid=composer]`, "Sorry about that!\rA new kettle is on its way."),
		chromedp.Click(`[data-testid=send]`),
		poll(`[...document.querySelectorAll('[data-testid=msg][data-direction=out][data-id]')].some(m =>
			(m.querySelector('[data-testid=email-subject]') || {}).textContent === `+jsString("Re: "+subject)+` &&
			(m.querySelector('[data-testid=email-cc]') || {}).textContent === 'Bob Buyer <bob@customer.example>' && m.textContent.includes('new kettle') &&
			m.textContent.includes('return-label.pdf'))`),
	)
	check("the composer keeps subject and recipients", `document.querySelector('[data-testid=composer]').value === '' &&
		!document.querySelector('[data-testid=staged-file]') &&
		document.querySelector('[data-testid=email-subject-input]').value === `+jsString("Re: "+subject)+` &&
		document.querySelector('[data-testid=email-to-input]').value === 'Ann Customer <ann@customer.example>' &&
		document.querySelector('[data-testid=email-cc-input]').value === 'Bob Buyer <bob@customer.example>'`)

	// What was stored, through the API.
	tok := apiLogin(t, n.base, "demo", "agent@demo.local", n.password)
	resp, body = n.get(t, "/v1/conversations/"+convID+"/messages?after_seq=0", tok)
	var got struct {
		Messages []conv.Message `json:"messages"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &got) != nil || len(got.Messages) != 2 {
		t.Fatalf("messages = %d %s", resp.StatusCode, body)
	}
	reply := got.Messages[1]
	wantEmail := conv.Email{Subject: "Re: " + subject, To: []string{"Ann Customer <ann@customer.example>"}, Cc: []string{"Bob Buyer <bob@customer.example>"}}
	if reply.Direction != conv.Out || len(reply.Parts) != 3 || reply.Parts[0].Type != conv.PartEmail || reply.Parts[0].Email == nil ||
		fmt.Sprint(*reply.Parts[0].Email) != fmt.Sprint(wantEmail) || reply.Parts[1].Type != conv.PartText || reply.Parts[1].Text != answer ||
		reply.Parts[2].Type != conv.PartFile || reply.Parts[2].Name != "return-label.pdf" || !strings.HasPrefix(reply.Parts[2].URL, "/v1/media/") {
		t.Fatalf("stored reply = %s", body)
	}
	if errs := evalString("page errors", `(window.__errs || []).join("\n")`); errs != "" {
		t.Fatalf("the console threw: %s", errs)
	}
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// apiLogin logs an agent in over HTTP and returns the bearer token.
func apiLogin(t *testing.T, base, tenant, email, password string) string {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"tenant": tenant, "email": email, "password": password})
	resp, err := http.Post(base+"/v1/auth/login", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Token string `json:"token"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&out) != nil || out.Token == "" {
		t.Fatalf("login = %d", resp.StatusCode)
	}
	return out.Token
}
