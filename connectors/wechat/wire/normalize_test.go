package wire

import (
	"errors"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/switchboard-hq/switchboard/core/conv"
)

const openID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"

func textPush(content string) Push {
	return Push{ToUserName: "gh_3f2a1b9c8d7e", FromUserName: openID, CreateTime: "1716182400", MsgType: "text", Content: content, MsgID: "24581703528912345"}
}

func eventPush(event, key string) Push {
	return Push{ToUserName: "gh_3f2a1b9c8d7e", FromUserName: openID, CreateTime: "1716182400", MsgType: "event", Event: event, EventKey: key}
}

// The reply-window, system and unsubscribe flags of every kind of push,
// read from the golden inputs.
func TestNormalizeFlags(t *testing.T) {
	tests := []struct {
		file                        string
		opens, system, unsubscribed bool
		event                       string
		media                       int
	}{
		{"text.xml", true, false, false, "", 0},
		{"image.xml", true, false, false, "", 1},
		{"voice.xml", true, false, false, "", 1},
		{"video.xml", true, false, false, "", 1},
		{"shortvideo.xml", true, false, false, "", 1},
		{"location.xml", true, false, false, "", 0},
		{"link.xml", true, false, false, "", 0},
		{"miniprogrampage.xml", true, false, false, "", 0},
		{"unsupported_type.xml", true, false, false, "", 0},
		{"event_subscribe.xml", true, true, false, "wechat.subscribe", 0},
		{"event_subscribe_qrscene.xml", true, true, false, "wechat.subscribe", 0},
		{"event_unsubscribe.xml", false, true, true, "wechat.unsubscribe", 0},
		{"event_scan.xml", true, true, false, "wechat.scan", 0},
		{"event_click.xml", true, true, false, "wechat.click", 0},
		{"event_view.xml", false, true, false, "wechat.view", 0},
		{"event_location.xml", false, true, false, "wechat.location", 0},
		{"event_user_enter_tempsession.xml", true, true, false, "wechat.user_enter_tempsession", 0},
		{"event_scancode_push.xml", false, true, false, "wechat.scancode_push", 0},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			body, err := os.ReadFile("testdata/" + tt.file)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Parse(body, FormatXML)
			if err != nil {
				t.Fatal(err)
			}
			n, err := Normalize(p)
			if err != nil {
				t.Fatal(err)
			}
			if n.OpensWindow != tt.opens || n.System != tt.system || n.Unsubscribed != tt.unsubscribed ||
				n.Parts[0].Event != tt.event || len(n.Media) != tt.media {
				t.Fatalf("got opens=%v system=%v unsubscribed=%v event=%q media=%d",
					n.OpensWindow, n.System, n.Unsubscribed, n.Parts[0].Event, len(n.Media))
			}
		})
	}
}

func TestNormalizeRejects(t *testing.T) {
	mod := func(f func(*Push)) Push { p := textPush("hi"); f(&p); return p }
	tests := []struct {
		name string
		push Push
	}{
		{"no FromUserName", mod(func(p *Push) { p.FromUserName = "" })},
		{"FromUserName with a colon", mod(func(p *Push) { p.FromUserName = "o:x" })},
		{"FromUserName with a space", mod(func(p *Push) { p.FromUserName = "o x" })},
		{"FromUserName not ASCII", mod(func(p *Push) { p.FromUserName = "用户" })},
		{"FromUserName too long", mod(func(p *Push) { p.FromUserName = strings.Repeat("o", 129) })},
		{"no CreateTime", mod(func(p *Push) { p.CreateTime = "" })},
		{"CreateTime not decimal", mod(func(p *Push) { p.CreateTime = "1716182400.0" })},
		{"CreateTime negative", mod(func(p *Push) { p.CreateTime = "-1" })},
		{"CreateTime zero", mod(func(p *Push) { p.CreateTime = "0" })},
		{"CreateTime after 9999", mod(func(p *Push) { p.CreateTime = "253402300800" })},
		{"no MsgType", mod(func(p *Push) { p.MsgType = "" })},
		{"MsgId with a space", mod(func(p *Push) { p.MsgID = "1 2" })},
		{"MsgId too long", mod(func(p *Push) { p.MsgID = strings.Repeat("9", 65) })},
		{"image without MediaId", mod(func(p *Push) { p.MsgType = "image"; p.PicURL = "http://mmbiz.qpic.cn/x" })},
		{"voice without MediaId", mod(func(p *Push) { p.MsgType = "voice" })},
		{"video without MediaId", mod(func(p *Push) { p.MsgType = "video" })},
		{"MediaId with a newline", mod(func(p *Push) { p.MsgType = "image"; p.MediaID = "abc\ndef" })},
		{"MediaId too long", mod(func(p *Push) { p.MsgType = "image"; p.MediaID = strings.Repeat("m", FieldLimit+1) })},
		{"location without coordinates", mod(func(p *Push) { p.MsgType = "location" })},
		{"location NaN", mod(func(p *Push) { p.MsgType = "location"; p.LocationX = "NaN"; p.LocationY = "1" })},
		{"location Inf", mod(func(p *Push) { p.MsgType = "location"; p.LocationX = "1"; p.LocationY = "+Inf" })},
		{"latitude out of range", mod(func(p *Push) { p.MsgType = "location"; p.LocationX = "90.5"; p.LocationY = "1" })},
		{"longitude out of range", mod(func(p *Push) { p.MsgType = "location"; p.LocationX = "1"; p.LocationY = "-181" })},
		{"link without title or url", mod(func(p *Push) { p.MsgType = "link"; p.Description = "d" })},
		{"miniprogrampage without title or page", mod(func(p *Push) { p.MsgType = "miniprogrampage"; p.AppID = "wx1" })},
		{"miniprogrampage AppId with a space", mod(func(p *Push) { p.MsgType = "miniprogrampage"; p.Title = "t"; p.AppID = "wx 1" })},
		{"event without Event", eventPush("", "")},
		{"Event with a colon", eventPush("a:b", "")},
		{"LOCATION event without coordinates", eventPush("LOCATION", "")},
		{"an envelope is not a push", Push{ToUserName: "gh_3f2a1b9c8d7e", Encrypt: docEncrypt}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Normalize(tt.push)
			if !errors.Is(err, conv.ErrInvalid) {
				t.Fatalf("Normalize = %+v, %v; want conv.ErrInvalid", n, err)
			}
		})
	}
}

func TestNormalizeEventTexts(t *testing.T) {
	tests := []struct {
		name  string
		push  Push
		text  string
		scene string
	}{
		{"subscribe", eventPush("subscribe", ""), "Followed the account", ""},
		{"subscribe by QR", eventPush("subscribe", "qrscene_123"), "Followed the account by scanning QR scene 123", "qrscene_123"},
		{"unsubscribe", eventPush("unsubscribe", ""), "Unfollowed the account", ""},
		{"SCAN", eventPush("SCAN", "123"), "Scanned QR scene 123", "qrscene_123"},
		{"SCAN with a string scene", eventPush("SCAN", "promo_may"), "Scanned QR scene promo_may", "qrscene_promo_may"},
		{"CLICK", eventPush("CLICK", "MENU_HELP"), "Clicked menu MENU_HELP", "MENU_HELP"},
		{"VIEW", eventPush("VIEW", "https://example.com/a"), "Opened menu link https://example.com/a", ""},
		{"LOCATION", func() Push {
			p := eventPush("LOCATION", "")
			p.Latitude, p.Longitude, p.Precision = "23.137466", "113.352425", "119.385040"
			return p
		}(), "Reported location 23.137466, 113.352425 (precision 119.38504)", ""},
		{"LOCATION without precision", func() Push {
			p := eventPush("LOCATION", "")
			p.Latitude, p.Longitude = "-33.8688", "151.2093"
			return p
		}(), "Reported location -33.8688, 151.2093", ""},
		{"user_enter_tempsession", func() Push {
			p := eventPush("user_enter_tempsession", "")
			p.SessionFrom = "goods:42"
			return p
		}(), "Opened customer service from goods:42", "goods:42"},
		{"user_enter_tempsession without SessionFrom", eventPush("user_enter_tempsession", ""), "Opened customer service", ""},
		{"unknown event", eventPush("TEMPLATESENDJOBFINISH", ""), "[unsupported WeChat event: TEMPLATESENDJOBFINISH]", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Normalize(tt.push)
			if err != nil {
				t.Fatal(err)
			}
			checkNormalized(t, n)
			if n.Parts[0].Text != tt.text || n.Scene != tt.scene {
				t.Fatalf("text %q scene %q; want %q, %q", n.Parts[0].Text, n.Scene, tt.text, tt.scene)
			}
			if want := "wechat." + strings.ToLower(tt.push.Event); n.Parts[0].Event != want {
				t.Fatalf("Part.Event %q, want %q", n.Parts[0].Event, want)
			}
		})
	}
}

func TestNormalizeBounds(t *testing.T) {
	t.Run("text cut to MaxTextRune runes", func(t *testing.T) {
		n, err := Normalize(textPush(strings.Repeat("好", conv.MaxTextRune+500)))
		if err != nil {
			t.Fatal(err)
		}
		checkNormalized(t, n)
		if got := utf8.RuneCountInString(n.Parts[0].Text); got != conv.MaxTextRune {
			t.Fatalf("%d runes", got)
		}
	})
	t.Run("blank text", func(t *testing.T) {
		for _, c := range []string{"", "   ", "\n\t", strings.Repeat(" ", conv.MaxTextRune) + "text after the cut"} {
			n, err := Normalize(textPush(c))
			if err != nil {
				t.Fatal(err)
			}
			if n.Parts[0].Text != "[empty message]" {
				t.Fatalf("%q became %q", conv.Shorten(c, 20), n.Parts[0].Text)
			}
		}
	})
	t.Run("invalid UTF-8 is replaced", func(t *testing.T) {
		n, err := Normalize(textPush("ok \xff\xfe ok"))
		if err != nil {
			t.Fatal(err)
		}
		checkNormalized(t, n)
		if n.Parts[0].Text != "ok \uFFFD ok" {
			t.Fatalf("%q", n.Parts[0].Text)
		}
	})
	t.Run("display fields cut at a rune boundary", func(t *testing.T) {
		p := textPush("")
		p.MsgType = "link"
		p.Title = "a" + strings.Repeat("链", 1000) // 3001 bytes: the cut lands inside a rune
		p.Description = strings.Repeat("d", 5000)
		p.URL = "https://example.com/" + strings.Repeat("u", 5000)
		n, err := Normalize(p)
		if err != nil {
			t.Fatal(err)
		}
		checkNormalized(t, n)
		part := n.Parts[0]
		if len(part.Title) != 2047 || !utf8.ValidString(part.Title) || len(part.Description) != FieldLimit || len(part.URL) != FieldLimit {
			t.Fatalf("title %d bytes, description %d, url %d", len(part.Title), len(part.Description), len(part.URL))
		}
	})
	t.Run("long scene", func(t *testing.T) {
		n, err := Normalize(eventPush("CLICK", strings.Repeat("k", 10000)))
		if err != nil {
			t.Fatal(err)
		}
		checkNormalized(t, n)
		if len(n.Scene) != FieldLimit {
			t.Fatalf("scene %d bytes", len(n.Scene))
		}
	})
	t.Run("FieldLimit is conv's limit", func(t *testing.T) {
		ok := conv.Part{Type: conv.PartCard, Title: strings.Repeat("t", FieldLimit)}
		over := conv.Part{Type: conv.PartCard, Title: strings.Repeat("t", FieldLimit+1)}
		if ok.Validate() != nil || over.Validate() == nil {
			t.Fatal("conv's field limit is no longer FieldLimit: update FieldLimit")
		}
	})
}

func TestNormalizeExternalID(t *testing.T) {
	t.Run("a long EventKey is hashed", func(t *testing.T) {
		a, err := Normalize(eventPush("VIEW", "https://example.com/"+strings.Repeat("a", 3000)))
		if err != nil {
			t.Fatal(err)
		}
		b, err := Normalize(eventPush("VIEW", "https://example.com/"+strings.Repeat("a", 2999)+"b"))
		if err != nil {
			t.Fatal(err)
		}
		checkNormalized(t, a)
		if len(a.ExternalID) > 300 || !strings.Contains(a.ExternalID, ":VIEW:sha256:") || a.ExternalID == b.ExternalID {
			t.Fatalf("%q / %q", a.ExternalID, b.ExternalID)
		}
	})
	t.Run("events at the same second differ by event and key", func(t *testing.T) {
		seen := map[string]bool{}
		for _, p := range []Push{eventPush("subscribe", "qrscene_1"), eventPush("SCAN", "1"), eventPush("CLICK", "A"), eventPush("CLICK", "B")} {
			n, err := Normalize(p)
			if err != nil {
				t.Fatal(err)
			}
			if seen[n.ExternalID] {
				t.Fatalf("collision on %q", n.ExternalID)
			}
			seen[n.ExternalID] = true
		}
	})
	t.Run("CreateTime is canonical", func(t *testing.T) {
		p := eventPush("CLICK", "A")
		p.CreateTime = "01716182400"
		n, err := Normalize(p)
		if err != nil {
			t.Fatal(err)
		}
		if n.ExternalID != "evt:"+openID+":1716182400:CLICK:A" {
			t.Fatalf("%q", n.ExternalID)
		}
	})
	t.Run("a message without MsgId is keyed on its content", func(t *testing.T) {
		a, b := textPush("one"), textPush("two")
		a.MsgID, b.MsgID = "", ""
		na, err := Normalize(a)
		if err != nil {
			t.Fatal(err)
		}
		nb, _ := Normalize(b)
		again, _ := Normalize(a)
		checkNormalized(t, na)
		if na.ExternalID == nb.ExternalID || na.ExternalID != again.ExternalID || !strings.HasPrefix(na.ExternalID, "msg:"+openID+":1716182400:text:") {
			t.Fatalf("%q %q %q", na.ExternalID, nb.ExternalID, again.ExternalID)
		}
	})
	t.Run("the same MsgId from two users differs", func(t *testing.T) {
		a, b := textPush("x"), textPush("x")
		b.FromUserName = "oUpF8uMuAJO_M2pxb1Q9zNjWeS7p"
		na, _ := Normalize(a)
		nb, _ := Normalize(b)
		if na.ExternalID == nb.ExternalID {
			t.Fatal("collision")
		}
	})
}

func TestVoiceMIME(t *testing.T) {
	for in, want := range map[string]string{
		"amr": "audio/amr", "AMR": "audio/amr", "speex": "audio/speex", "mp3": "audio/mp3", "Silk": "audio/silk",
		"": "", "a/b": "application/octet-stream", "x y": "application/octet-stream",
		strings.Repeat("a", 33): "application/octet-stream",
	} {
		if got := voiceMIME(in); got != want {
			t.Errorf("voiceMIME(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNormalizeUnsupportedType(t *testing.T) {
	p := textPush("caption")
	p.MsgType = "file"
	p.Title = "invoice.pdf"
	n, err := Normalize(p)
	if err != nil {
		t.Fatal(err)
	}
	checkNormalized(t, n)
	if n.Parts[0].Type != conv.PartText || n.Parts[0].Text != "[unsupported WeChat message type: file]\ncaption\ninvoice.pdf" || !n.OpensWindow || n.System {
		t.Fatalf("%+v", n)
	}
}
