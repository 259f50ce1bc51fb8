package mail

import (
	"bytes"
	"encoding/base64"
	"flag"
	"mime/quotedprintable"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/encoding/traditionalchinese"
)

// go test -run TestGenerate -gen ./connectors/email/mail/ rewrites the
// testdata mails whose bytes are not UTF-8 (GBK, Big5, GB18030,
// ISO-2022-JP), built here with golang.org/x/text encoders, and the fuzz seed
// corpus from every testdata/*.eml. The UTF-8 and ASCII mails are written by
// hand; the generated ones are committed like them.
var gen = flag.Bool("gen", false, "regenerate the non-UTF-8 testdata mails and the fuzz seed corpus")

// Without -gen it checks that the committed mails are what the generator
// makes, so the generator and the golden inputs cannot drift apart.
func TestGenerate(t *testing.T) {
	for name, eml := range generated(t) {
		eml = strings.ReplaceAll(eml, "\n", "\r\n")
		path := filepath.Join("testdata", name+".eml")
		if !*gen {
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%s: %v (run with -gen to write it)", path, err)
			}
			if string(got) != eml {
				t.Errorf("%s differs from what the generator makes; run with -gen", path)
			}
			continue
		}
		if err := os.WriteFile(path, []byte(eml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if *gen {
		writeSeedCorpus(t)
	}
}

func enc(t *testing.T, e encoding.Encoding, s string) []byte {
	t.Helper()
	b, err := e.NewEncoder().Bytes([]byte(s))
	if err != nil {
		t.Fatalf("encode %q: %v", s, err)
	}
	return b
}

// word is an RFC 2047 B-encoded word of s in label's charset.
func word(t *testing.T, e encoding.Encoding, label, s string) string {
	t.Helper()
	return "=?" + label + "?B?" + base64.StdEncoding.EncodeToString(enc(t, e, s)) + "?="
}

func b64Lines(b []byte) string {
	s := base64.StdEncoding.EncodeToString(b)
	var out strings.Builder
	for len(s) > 76 {
		out.WriteString(s[:76] + "\n")
		s = s[76:]
	}
	out.WriteString(s + "\n")
	return out.String()
}

func qp(t *testing.T, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	w := quotedprintable.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return strings.ReplaceAll(buf.String(), "\r\n", "\n")
}

func generated(t *testing.T) map[string]string {
	t.Helper()
	gbk, gb18030 := simplifiedchinese.GBK, simplifiedchinese.GB18030
	big5, jis := traditionalchinese.Big5, japanese.ISO2022JP
	out := map[string]string{}

	// GBK body; the From name is labelled GB2312 but holds 喆, a GBK-only
	// character, as mislabelled mail often does.
	out["gbk"] = "Return-Path: <zhangzhe@example.cn>\n" +
		"Message-ID: <5E6F7A8B.1C2D3E4F@example.cn>\n" +
		"Date: Tue, 12 Mar 2024 09:30:00 +0800\n" +
		"From: " + word(t, gbk, "GB2312", "张喆") + " <zhangzhe@example.cn>\n" +
		"To: " + word(t, gbk, "GBK", "Acme 客服") + " <support@acme.example>\n" +
		"Subject: " + word(t, gbk, "GB2312", "订单 1234 还没有收到") + "\n" +
		"MIME-Version: 1.0\n" +
		"Content-Type: text/plain; charset=\"GBK\"\n" +
		"Content-Transfer-Encoding: 8bit\n\n" +
		string(enc(t, gbk, "您好：\n\n我在2月20日下的订单（1234号）到现在还没有收到，物流一直显示“已揽收”。\n麻烦帮忙查一下，谢谢！\n\n张喆\n"))

	out["big5"] = "Message-ID: <20240312.101500.big5@example.tw>\n" +
		"Date: Tue, 12 Mar 2024 10:15:00 +0800\n" +
		"From: " + word(t, big5, "big5", "陳怡君") + " <yijun.chen@example.tw>\n" +
		"To: support@acme.example\n" +
		"Subject: " + word(t, big5, "Big5", "訂單 5678 的發票問題") + "\n" +
		"MIME-Version: 1.0\n" +
		"Content-Type: text/plain; charset=big5\n" +
		"Content-Transfer-Encoding: quoted-printable\n\n" +
		qp(t, enc(t, big5, "您好，\n\n我收到的發票抬頭寫錯了，請幫我改成「宏達科技股份有限公司」，統一編號 12345678。\n\n謝謝！\n陳怡君\n"))

	// GB18030 four-byte sequences: 𠮷 (outside the BMP) and an emoji.
	out["gb18030"] = "Message-ID: <gb18030.0001@example.cn>\n" +
		"Date: Wed, 13 Mar 2024 14:00:00 +0800\n" +
		"From: " + word(t, gb18030, "GB18030", "李娜") + " <lina@example.cn>\n" +
		"To: support@acme.example\n" +
		"Subject: " + word(t, gb18030, "GB18030", "关于退款 𠮷野家 😊") + "\n" +
		"MIME-Version: 1.0\n" +
		"Content-Type: text/plain; charset=GB18030\n" +
		"Content-Transfer-Encoding: base64\n\n" +
		b64Lines(enc(t, gb18030, "你好，我在𠮷野家店买的礼品卡要退款 😊，金额 €20。\n"))

	foxText := "好的，收到了，谢谢！\n\n" +
		"------------------ 原始邮件 ------------------\n" +
		"发件人: \"Acme 客服\"<support@acme.example>;\n" +
		"发送时间: 2024年3月12日(星期二) 上午10:12\n" +
		"收件人: \"刘洋\"<liuyang@qq.com>;\n" +
		"主题: 回复：订单 9012 退款\n\n" +
		"刘洋您好，退款已经处理，3-5个工作日到账。\n"
	foxHTML := "<meta http-equiv=\"Content-Type\" content=\"text/html; charset=GB18030\">" +
		"<div>好的，收到了，谢谢！</div><div>&nbsp;</div>" +
		"<div style=\"font-size: 12px;font-family: Arial Narrow;padding:2px 0 2px 0;\">------------------&nbsp;原始邮件&nbsp;------------------</div>" +
		"<div style=\"font-size: 12px;background:#efefef;padding:8px;\"><div><b>发件人:</b>&nbsp;\"Acme 客服\"&lt;support@acme.example&gt;;</div>" +
		"<div><b>发送时间:</b>&nbsp;2024年3月12日(星期二) 上午10:12</div><div><b>收件人:</b>&nbsp;\"刘洋\"&lt;liuyang@qq.com&gt;;</div>" +
		"<div></div><div><b>主题:</b>&nbsp;回复：订单 9012 退款</div></div><div>&nbsp;</div>刘洋您好，退款已经处理，3-5个工作日到账。"
	out["foxmail_reply"] = "X-QQ-mid: xmsezc12-0t1710212345t1234567\n" +
		"From: " + word(t, gb18030, "gb18030", "刘洋") + " <liuyang@qq.com>\n" +
		"To: " + word(t, gb18030, "gb18030", "Acme 客服") + " <support@acme.example>\n" +
		"Subject: " + word(t, gb18030, "gb18030", "回复：回复：订单 9012 退款") + "\n" +
		"Mime-Version: 1.0\n" +
		"Content-Type: multipart/alternative;\n\tboundary=\"----=_NextPart_65F0A1B2_0C3D4E50_12345678\"\n" +
		"Content-Transfer-Encoding: 8Bit\n" +
		"Date: Tue, 12 Mar 2024 11:05:42 +0800\n" +
		"X-Priority: 3\n" +
		"Message-ID: <tencent_9A8B7C6D5E4F3A2B1C0D@qq.com>\n" +
		"X-QQ-MIME: TCMime 1.0 by Tencent\n" +
		"X-Mailer: QQMail 2.x\n" +
		"X-QQ-Mailer: QQMail 2.x\n" +
		"In-Reply-To: <sb.301234567890123456.301234567890123999.6eamlxuqkj5ovgsx@mail.acme.example>\n" +
		"References: <sb.301234567890123456.301234567890123999.6eamlxuqkj5ovgsx@mail.acme.example>\n\n" +
		"This is a multi-part message in MIME format.\n\n" +
		"------=_NextPart_65F0A1B2_0C3D4E50_12345678\n" +
		"Content-Type: text/plain;\n\tcharset=\"gb18030\"\n" +
		"Content-Transfer-Encoding: base64\n\n" +
		b64Lines(enc(t, gb18030, foxText)) + "\n" +
		"------=_NextPart_65F0A1B2_0C3D4E50_12345678\n" +
		"Content-Type: text/html;\n\tcharset=\"gb18030\"\n" +
		"Content-Transfer-Encoding: base64\n\n" +
		b64Lines(enc(t, gb18030, foxHTML)) + "\n" +
		"------=_NextPart_65F0A1B2_0C3D4E50_12345678--\n\n"

	out["iso2022jp"] = "Message-ID: <20240314093000.jp01@example.jp>\n" +
		"Date: Thu, 14 Mar 2024 09:30:00 +0900\n" +
		"From: " + word(t, jis, "ISO-2022-JP", "山田太郎") + " <taro.yamada@example.jp>\n" +
		"To: support@acme.example\n" +
		"Subject: " + word(t, jis, "ISO-2022-JP", "注文の確認") + "\n" +
		"MIME-Version: 1.0\n" +
		"Content-Type: text/plain; charset=ISO-2022-JP\n" +
		"Content-Transfer-Encoding: 7bit\n\n" +
		string(enc(t, jis, "お世話になっております。\n注文番号 3456 の配送状況を教えてください。\n\n山田\n"))
	return out
}

// writeSeedCorpus writes every testdata mail, and a few hostile shapes, as
// go-fuzz seed files for FuzzParse.
func writeSeedCorpus(t *testing.T) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", "FuzzParse")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	seeds := map[string][]byte{}
	files, _ := filepath.Glob(filepath.Join("testdata", "*.eml"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		seeds[strings.TrimSuffix(filepath.Base(f), ".eml")] = b
	}
	for name, b := range smallHostileSeeds() {
		seeds[name] = b
	}
	for name, b := range seeds {
		body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, "seed_"+name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// smallHostileSeeds are miniature versions of the bombs: shapes the fuzzer
// should mutate from.
func smallHostileSeeds() map[string][]byte {
	var deep strings.Builder
	deep.WriteString("From: a@b.example\r\n")
	for i := 0; i < 12; i++ {
		deep.WriteString("Content-Type: multipart/mixed; boundary=b" + strconv.Itoa(i) + "\r\n\r\n--b" + strconv.Itoa(i) + "\r\n")
	}
	deep.WriteString("\r\nx\r\n")
	var many strings.Builder
	many.WriteString("From: a@b.example\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n")
	for i := 0; i < 30; i++ {
		many.WriteString("--z\r\nContent-Type: text/plain\r\n\r\npart " + strconv.Itoa(i) + "\r\n")
	}
	many.WriteString("--z--\r\n")
	return map[string][]byte{
		"deep":          []byte(deep.String()),
		"many":          []byte(many.String()),
		"no_boundary":   []byte("From: a@b.example\r\nContent-Type: multipart/mixed\r\n\r\nbody\r\n"),
		"unterminated":  []byte("From: a@b.example\r\nContent-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\nContent-Type: text/html\r\n\r\n<p>hi"),
		"bad_base64":    []byte("From: a@b.example\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!aGVsbG8=====\r\n"),
		"folded_header": []byte("From: a@b.example\r\nSubject: a\r\n\tb\r\n c\r\n\r\nx"),
	}
}
