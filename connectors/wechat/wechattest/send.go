package wechattest

import (
	"encoding/json"
	"net/http"
	"time"
)

// Customer-service message types each kind of app may send.
var sendTypes = map[appKind]map[string]bool{
	kindOfficial: {
		"text": true, "image": true, "voice": true, "video": true, "music": true,
		"news": true, "mpnews": true, "mpnewsarticle": true, "msgmenu": true,
		"wxcard": true, "miniprogrampage": true,
	},
	kindMiniProgram: {"text": true, "image": true, "link": true, "miniprogrampage": true},
}

// handleSend is POST /cgi-bin/message/custom/send (and the mini-program
// business/send spelling). Checks run in this order: token and quotas,
// body, touser, msgtype, the message object, subscription, reply window.
func (s *Server) handleSend(w http.ResponseWriter, r *http.Request) {
	obj, body, perr := s.readJSONBody(r)

	s.mu.Lock()
	a, tok, e := s.authLocked(r)
	if e == nil {
		e = perr
	}
	var u *user
	var msgType, touser string
	now := s.now()
	if e == nil {
		touser, _ = str(obj, "touser")
		if u = a.users[touser]; touser == "" || u == nil {
			e = &errOpenID
		}
	}
	if e == nil {
		msgType, _ = str(obj, "msgtype")
		if !sendTypes[a.kind][msgType] {
			e = &errMsgType
		}
	}
	if e == nil {
		e = s.checkMessageLocked(a, msgType, obj, now)
	}
	if e == nil && a.kind == kindOfficial && !u.subscribed {
		e = &errRequireSubscribe
	}
	if e == nil {
		e = s.takeReplyLocked(u, now)
	}
	if e != nil {
		s.mu.Unlock()
		s.writeErr(w, r, *e)
		return
	}
	u.lastExchange = now
	u.typingUntil = time.Time{} // a message ends the typing state
	s.sent = append(s.sent, Sent{
		AppID: a.id, Token: tok, Path: r.URL.Path, ToUser: touser, MsgType: msgType,
		Body: append(json.RawMessage(nil), body...), At: now,
	})
	s.notifyLocked()
	s.mu.Unlock()
	writeOK(w)
}

// checkMessageLocked validates the object named by msgtype.
func (s *Server) checkMessageLocked(a *app, msgType string, obj map[string]json.RawMessage, now time.Time) *apiErr {
	sub, ok := object(obj, msgType)
	if !ok {
		return &errDataFormat
	}
	need := func(keys ...string) *apiErr {
		for _, k := range keys {
			if v, ok := str(sub, k); !ok || v == "" {
				return &errDataFormat
			}
		}
		return nil
	}
	media := func(key string, required bool) *apiErr {
		id, ok := str(sub, key)
		switch {
		case (!ok || id == "") && required:
			return &errMediaIDMissing
		case !ok || id == "":
			return nil
		case s.mediaLocked(a, id, now) == nil:
			return &errMediaID
		}
		return nil
	}
	switch msgType {
	case "text":
		c, _ := str(sub, "content")
		if c == "" {
			return &errEmptyContent
		}
		if s.cfg.MaxTextBytes > 0 && len(c) > s.cfg.MaxTextBytes {
			return &errContentSize
		}
	case "image", "voice":
		return media("media_id", true)
	case "video":
		if e := media("media_id", true); e != nil {
			return e
		}
		return media("thumb_media_id", false)
	case "music":
		return media("thumb_media_id", true)
	case "news":
		var articles []map[string]json.RawMessage
		if raw, ok := sub["articles"]; !ok || json.Unmarshal(raw, &articles) != nil {
			return &errDataFormat
		}
		if len(articles) == 0 {
			return &errEmptyNews
		}
		if len(articles) > s.cfg.MaxArticles {
			return &errArticleSize
		}
		for _, art := range articles {
			if t, _ := str(art, "title"); t == "" {
				return &errDataFormat
			}
			if u, _ := str(art, "url"); u == "" {
				return &errDataFormat
			}
		}
	case "mpnews":
		if id, _ := str(sub, "media_id"); id == "" {
			return &errMediaIDMissing
		}
	case "mpnewsarticle":
		return need("article_id")
	case "wxcard":
		return need("card_id")
	case "msgmenu":
		var list []json.RawMessage
		if raw, ok := sub["list"]; !ok || json.Unmarshal(raw, &list) != nil || len(list) == 0 {
			return &errDataFormat
		}
	case "link":
		return need("title", "url")
	case "miniprogrampage":
		if e := need("title", "pagepath"); e != nil {
			return e
		}
		if a.kind == kindOfficial {
			if e := need("appid"); e != nil {
				return e
			}
		}
		return media("thumb_media_id", true)
	}
	return nil
}

// handleTyping is POST /cgi-bin/message/custom/typing (and business/typing).
func (s *Server) handleTyping(w http.ResponseWriter, r *http.Request) {
	obj, _, perr := s.readJSONBody(r)

	s.mu.Lock()
	a, _, e := s.authLocked(r)
	if e == nil {
		e = perr
	}
	var u *user
	var touser, cmd string
	now := s.now()
	if e == nil {
		touser, _ = str(obj, "touser")
		if u = a.users[touser]; touser == "" || u == nil {
			e = &errOpenID
		}
	}
	if e == nil {
		if cmd, _ = str(obj, "command"); cmd != "Typing" && cmd != "CancelTyping" {
			e = &errCommand
		}
	}
	if e == nil && a.kind == kindOfficial && !u.subscribed {
		e = &errRequireSubscribe
	}
	if e == nil {
		e = canReplyLocked(u, now)
	}
	if e == nil && cmd == "Typing" {
		switch {
		case s.cfg.TypingWindow > 0 && now.Sub(u.lastExchange) > s.cfg.TypingWindow:
			e = &errTypingWindow
		case s.cfg.TypingDuration > 0 && now.Before(u.typingUntil):
			e = &errAlreadyTyping
		}
	}
	if e != nil {
		s.mu.Unlock()
		s.writeErr(w, r, *e)
		return
	}
	u.typingUntil = time.Time{}
	if cmd == "Typing" && s.cfg.TypingDuration > 0 {
		u.typingUntil = now.Add(s.cfg.TypingDuration)
	}
	s.typing = append(s.typing, Typing{AppID: a.id, ToUser: touser, Command: cmd, At: now})
	s.notifyLocked()
	s.mu.Unlock()
	writeOK(w)
}
