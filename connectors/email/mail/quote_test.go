package mail

import "testing"

func TestFoldQuotes(t *testing.T) {
	cases := []struct{ name, in, body, quoted string }{
		{"nothing to fold", "Hello\n\nThanks", "Hello\n\nThanks", ""},
		{"gmail", "Yes.\n\nOn Tue, Mar 5, 2024 at 6:02 PM Acme <a@acme.example> wrote:\n> Hi\n> there", "Yes.",
			"On Tue, Mar 5, 2024 at 6:02 PM Acme <a@acme.example> wrote:\n> Hi\n> there"},
		{"gmail wrapped attribution", "Yes.\n\nOn Tue, Mar 5, 2024 at 6:02 PM Acme Support <\nsupport@acme.example> wrote:\n\n> Hi", "Yes.",
			"On Tue, Mar 5, 2024 at 6:02 PM Acme Support <\nsupport@acme.example> wrote:\n\n> Hi"},
		{"gmail chinese", "好的\n\n李伟 <liwei@acme.example> 于2024年3月5日周二 18:02写道：\n> 您好", "好的",
			"李伟 <liwei@acme.example> 于2024年3月5日周二 18:02写道：\n> 您好"},
		{"apple chinese", "好的\n\n在 2024年3月5日，18:02，李伟 <liwei@acme.example> 写道：\n\n> 您好", "好的",
			"在 2024年3月5日，18:02，李伟 <liwei@acme.example> 写道：\n\n> 您好"},
		{"outlook original message", "Fixed.\n\n-----Original Message-----\nFrom: A\nSent: B\n\nold", "Fixed.",
			"-----Original Message-----\nFrom: A\nSent: B\n\nold"},
		{"outlook header block", "Fixed.\n\nFrom: Acme Support <support@acme.example>\nSent: Tuesday, March 5, 2024 6:02 PM\nTo: Jane\nSubject: RE: x\n\nold", "Fixed.",
			"From: Acme Support <support@acme.example>\nSent: Tuesday, March 5, 2024 6:02 PM\nTo: Jane\nSubject: RE: x\n\nold"},
		{"outlook underscores", "Fixed.\n\n________________________________\nFrom: Acme\nSent: x\n\nold", "Fixed.",
			"________________________________\nFrom: Acme\nSent: x\n\nold"},
		{"outlook chinese header block", "收到\n\n发件人: Acme 客服 <support@acme.example>\n发送时间: 2024年3月5日 18:02\n收件人: 李伟\n主题: 订单\n\n旧邮件", "收到",
			"发件人: Acme 客服 <support@acme.example>\n发送时间: 2024年3月5日 18:02\n收件人: 李伟\n主题: 订单\n\n旧邮件"},
		{"foxmail", "好的\n\n------------------\u00a0原始邮件\u00a0------------------\n发件人: \"Acme\"<a@acme.example>;\n\n旧", "好的",
			"------------------\u00a0原始邮件\u00a0------------------\n发件人: \"Acme\"<a@acme.example>;\n\n旧"},
		{"qq mobile", "ok\n\n------------------ Original ------------------\nFrom: x", "ok", "------------------ Original ------------------\nFrom: x"},
		{"signature", "Thanks\n\n-- \nJane Doe\nACME Corp", "Thanks", "-- \nJane Doe\nACME Corp"},
		{"signature then quote", "Thanks\n-- \nJane\n\nOn Mon, Jan 1, 2024 Bob <b@x> wrote:\n> hi", "Thanks", "-- \nJane\n\nOn Mon, Jan 1, 2024 Bob <b@x> wrote:\n> hi"},
		{"trailing quote without attribution", "Agreed.\n\n> old line\n>\n> more\n", "Agreed.", "> old line\n>\n> more"},
		{"inline reply kept", "> Can you ship Friday?\nYes.\n> And the invoice?\nAttached.", "> Can you ship Friday?\nYes.\n> And the invoice?\nAttached.", ""},
		{"forward kept", "FYI\n\n---------- Forwarded message ---------\nFrom: Shop <shop@example.com>\nDate: Mon, Mar 4, 2024\nSubject: Receipt\n\nTotal 20 EUR", "FYI\n\n---------- Forwarded message ---------\nFrom: Shop <shop@example.com>\nDate: Mon, Mar 4, 2024\nSubject: Receipt\n\nTotal 20 EUR", ""},
		{"all quoted is not folded", "> only a quote\n> nothing else", "> only a quote\n> nothing else", ""},
		{"from without sent kept", "From: my phone I can't log in.\nPlease help.", "From: my phone I can't log in.\nPlease help.", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body, quoted := foldQuotes(tc.in)
			want(t, "body", body, tc.body)
			want(t, "quoted", quoted, tc.quoted)
		})
	}
}

func TestHTMLToText(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"blocks", "<p>a</p><p>b</p>", "a\n\nb"},
		{"br and inline", "Hello <b>Jane</b>,<br>thanks", "Hello Jane,\nthanks"},
		{"blockquote", "new<blockquote>old<br>older</blockquote>", "new\n> old\n> older"},
		{"script dropped", "<script>x()</script>visible", "visible"},
		{"entities", "a&nbsp;&amp;&lt;b", "a &<b"},
		{"image alt", `see <img src="cid:x" alt="photo">`, "see [photo]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want(t, "htmlToText", htmlToText(tc.in), tc.want)
		})
	}
}
