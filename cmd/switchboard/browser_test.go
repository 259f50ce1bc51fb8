package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// TestBrowserWidgetAndConsole drives headless Chromium: the console and the
// demo page in two tabs of one browser. The visitor writes from the widget,
// the agent answers from the console, and both screens show both messages
// with their delivery state. SWITCHBOARD_TEST_BROWSER holds the Chromium
// binary.
func TestBrowserWidgetAndConsole(t *testing.T) {
	chromium := testenv.Require(t, "SWITCHBOARD_TEST_BROWSER")
	s := startServer(t)
	base := "http://" + s.addr

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Headless,
		chromedp.WindowSize(1280, 800), chromedp.Flag("disable-dev-shm-usage", true))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	consoleTab, cancelConsole := chromedp.NewContext(allocCtx)
	defer cancelConsole()
	ctx, cancel := context.WithTimeout(consoleTab, 90*time.Second)
	defer cancel()
	run := func(ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		for _, a := range actions {
			if _, err := chromedp.Run(ctx, a); err != nil {
				page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(window.__errs || []).join("\\n") + "\\n---\\n" + document.body.innerText.slice(0, 4000)`))
				t.Fatalf("%s: %v\npage text:\n%s", what, err, page)
			}
		}
	}
	eval := func(ctx context.Context, what, js string) bool {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
	poll := func(js string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := chromedp.Poll[bool](js, chromedp.WithPollingTimeout(30*time.Second))(ctx, tg)
			return chromedp.Void{}, err
		}
	}

	// The agent logs in to the console.
	run(ctx, "console login",
		chromedp.Navigate(base+"/console/"),
		chromedp.WaitVisible(`[data-testid=login-tenant]`),
		func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := chromedp.Evaluate[any](`window.__errs = []; window.addEventListener('error', e => window.__errs.push(e.message + ' @' + e.lineno)); window.addEventListener('unhandledrejection', e => window.__errs.push('rejection: ' + e.reason)); true`)(ctx, tg)
			return chromedp.Void{}, err
		},
		chromedp.SendKeys(`[data-testid=login-tenant]`, "demo"),
		chromedp.SendKeys(`[data-testid=login-email]`, "agent@demo.local"),
		chromedp.SendKeys(`[data-testid=login-password]`, s.password),
		chromedp.Click(`[data-testid=login-submit]`),
		chromedp.WaitVisible(`[data-testid=presence][data-status=online]`),
	)

	// The visitor opens the demo shop in a second tab and writes.
	widgetTab, cancelWidget := chromedp.NewContext(consoleTab)
	defer cancelWidget()
	wctx, wcancel := context.WithTimeout(widgetTab, 90*time.Second)
	defer wcancel()
	inWidget := func(js string) string {
		return `(() => { const r = window.Switchboard && window.Switchboard.root; if (!r) return null; ` + js + ` })()`
	}
	const hello = "Hi! Is the blue kettle <b>in stock</b>?"
	run(wctx, "open the widget",
		chromedp.Navigate(base+"/demo"),
		poll(`!!(window.Switchboard && window.Switchboard.root)`),
		func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := chromedp.Evaluate[any](`window.Switchboard.open()`)(ctx, tg)
			return chromedp.Void{}, err
		},
		poll(inWidget(`const i = r.querySelector('[data-testid=sb-input]'); return !!i && !i.disabled;`)),
	)
	eval(wctx, "send from the widget", inWidget(fmt.Sprintf(`
		const i = r.querySelector('[data-testid=sb-input]');
		i.value = %q; i.dispatchEvent(new Event('input', {bubbles: true}));
		r.querySelector('[data-testid=sb-send]').click(); return true;`, hello)))
	run(wctx, "the widget shows the message stored",
		poll(inWidget(`return [...r.querySelectorAll('[data-testid=sb-msg][data-direction=in]')].some(m => m.dataset.status === 'sent' && m.textContent.includes('in stock'));`)))

	// The console lists the conversation (dispatched to this agent: Mine),
	// opens it and shows the text as text.
	run(ctx, "the conversation reaches the console",
		chromedp.WaitVisible(`[data-testid=conv-row]`),
		chromedp.Click(`[data-testid=conv-row]`),
		poll(`[...document.querySelectorAll('[data-testid=msg][data-direction=in]')].some(m => m.textContent.includes('<b>in stock</b>'))`),
	)
	if eval(ctx, "no HTML injection in the console", `!!document.querySelector('[data-testid=history] b')`) {
		t.Fatal("the console rendered the visitor's text as HTML")
	}

	// The agent answers with Enter.
	const answer = "Yes — 12 left. Shall I reserve one?"
	run(ctx, "reply from the console",
		chromedp.SendKeys(`[data-testid=composer]`, answer+"\r"),
		poll(`[...document.querySelectorAll('[data-testid=msg][data-direction=out]')].some(m => m.textContent.includes('12 left') && ['sent','delivered','read'].includes(m.dataset.status))`),
	)
	run(wctx, "the widget shows the reply",
		poll(inWidget(`return [...r.querySelectorAll('[data-testid=sb-msg][data-direction=out]')].some(m => m.textContent.includes('12 left'));`)))
	if eval(wctx, "no HTML injection in the widget", inWidget(`return !!r.querySelector('b');`)) {
		t.Fatal("the widget rendered the text as HTML")
	}
	html, err := chromedp.Run(ctx, chromedp.OuterHTML(`[data-testid=history]`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(html, "&lt;b&gt;in stock&lt;/b&gt;") {
		t.Fatalf("the console's history does not show the visitor's text escaped:\n%s", html)
	}
}
