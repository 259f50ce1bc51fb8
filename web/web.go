// Package web holds Switchboard's browser assets, embedded into the binary
// with go:embed so a single file serves everything: no build step, no
// third-party code, nothing loaded from another origin.
//
// FS contains, by path:
//
//	widget.js            the web chat widget sites embed with
//	                     <script src="https://HOST/widget.js" data-channel="ID" async>;
//	                     serve it at /widget.js. It talks to the visitor API of
//	                     docs/api.md on the origin it was loaded from.
//	console/index.html   the agent console, served at /console/ (with
//	console/console.css  /console redirecting there); the page loads
//	console/console.js   /console/console.css and /console/console.js.
//	demo.html            an "Acme Store" product page with the widget embedded,
//	demo.css             served at /demo after replacing every {{CHANNEL_ID}}
//	                     with a webchat channel id (see DemoPlaceholder); it
//	                     loads /demo.css and /widget.js.
//
// The pages use no inline script, style attribute or event handler, so they
// run under a strict Content-Security-Policy such as
// "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' blob: data:;
// media-src 'self' blob:; frame-ancestors 'none'". The widget styles its
// shadow root with a constructed stylesheet, which a host page's CSP does not
// block.
package web

import "embed"

// DemoPlaceholder is the text in demo.html that the server replaces with the
// id of the channel the demo page should chat on.
const DemoPlaceholder = "{{CHANNEL_ID}}"

// FS holds the browser assets listed in the package comment, rooted at this
// directory (paths are "widget.js", "console/index.html", …).
//
//go:embed widget.js demo.html demo.css console/index.html console/console.css console/console.js
var FS embed.FS
