package wechattest

import (
	"net/http"
	"time"
)

// grantKind names what a user did; each kind grants its own number of
// replies for its own window, and a newer interaction of a kind replaces
// the older grant of that kind (the count starts afresh, it does not add).
type grantKind int

const (
	grantMessage grantKind = iota // the user sent a message
	grantEvent                    // subscribe, SCAN, menu CLICK
	grantSession                  // mini program user_enter_tempsession
)

type grant struct {
	until time.Time
	left  int
}

type user struct {
	openid        string
	unionid       string
	subscribed    bool
	subscribeTime time.Time
	grants        map[grantKind]*grant
	lastExchange  time.Time // last message either way (typing needs one within TypingWindow)
	typingUntil   time.Time
}

// AddUser registers a subscribed user of appID (unionid "" when the app is
// not bound to an Open Platform account). Pushes from unknown openids
// register them too.
func (s *Server) AddUser(appID, openid, unionid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.userLocked(s.appLocked(appID), openid)
	u.unionid = unionid
}

func (s *Server) userLocked(a *app, openid string) *user {
	u := a.users[openid]
	if u == nil {
		u = &user{openid: openid, subscribed: true, subscribeTime: s.now(), grants: make(map[grantKind]*grant)}
		a.users[openid] = u
	}
	return u
}

// Interact records that the user sent the app a message at time at: the
// app may reply RepliesPerMessage times within ReplyWindow of at.
func (s *Server) Interact(appID, openid string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.interactLocked(appID, openid, "text", "", at)
}

// InteractEvent records an event pushed for the user at time at, with
// WeChat's effect: subscribe (re)subscribes, unsubscribe unsubscribes and
// ends every grant; subscribe, SCAN, CLICK, scancode_push and
// scancode_waitmsg grant RepliesPerEvent within EventReplyWindow;
// user_enter_tempsession grants RepliesPerSession within
// SessionReplyWindow; other events (VIEW, LOCATION, …) grant nothing.
func (s *Server) InteractEvent(appID, openid, event string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.interactLocked(appID, openid, "event", event, at)
}

// interactLocked applies one pushed message or event from openid.
func (s *Server) interactLocked(appID, openid, msgType, event string, at time.Time) {
	if openid == "" {
		return
	}
	defer s.notifyLocked()
	u := s.userLocked(s.appLocked(appID), openid)
	give := func(k grantKind, window time.Duration, n int) {
		u.grants[k] = &grant{until: at.Add(window), left: n}
		u.lastExchange = maxTime(u.lastExchange, at)
	}
	if msgType != "event" {
		give(grantMessage, s.cfg.ReplyWindow, s.cfg.RepliesPerMessage)
		return
	}
	switch event {
	case "subscribe":
		u.subscribed, u.subscribeTime = true, at
		give(grantEvent, s.cfg.EventReplyWindow, s.cfg.RepliesPerEvent)
	case "unsubscribe":
		u.subscribed = false
		clear(u.grants)
	case "SCAN", "CLICK", "scancode_push", "scancode_waitmsg":
		give(grantEvent, s.cfg.EventReplyWindow, s.cfg.RepliesPerEvent)
	case "user_enter_tempsession":
		give(grantSession, s.cfg.SessionReplyWindow, s.cfg.RepliesPerSession)
	}
}

// takeReplyLocked spends one reply from the grant that ends soonest.
func (s *Server) takeReplyLocked(u *user, now time.Time) *apiErr {
	var best *grant
	open := false
	for _, g := range u.grants {
		if !now.Before(g.until) {
			continue
		}
		open = true
		if g.left > 0 && (best == nil || g.until.Before(best.until)) {
			best = g
		}
	}
	switch {
	case !open:
		return &errOutOfWindow
	case best == nil:
		return &errOutOfCount
	}
	best.left--
	return nil
}

// canReplyLocked is takeReplyLocked without spending.
func canReplyLocked(u *user, now time.Time) *apiErr {
	for _, g := range u.grants {
		if now.Before(g.until) {
			return nil
		}
	}
	return &errOutOfWindow
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// handleUserInfo is GET /cgi-bin/user/info (Official Accounts only). The
// answer follows the current docs: no nickname, sex or headimgurl, and
// language is no longer filled in; an unsubscribed user yields only
// subscribe 0, openid (and unionid when bound).
func (s *Server) handleUserInfo(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	a, _, e := s.authLocked(r)
	if e != nil {
		s.mu.Unlock()
		s.writeErr(w, r, *e)
		return
	}
	if a.kind == kindMiniProgram {
		s.mu.Unlock()
		s.writeErr(w, r, errUnauthorized)
		return
	}
	openid := r.URL.Query().Get("openid")
	if openid == "" {
		s.mu.Unlock()
		s.writeErr(w, r, errOpenIDMissing)
		return
	}
	u := a.users[openid]
	if u == nil {
		s.mu.Unlock()
		s.writeErr(w, r, errOpenID)
		return
	}
	out := map[string]any{"subscribe": 0, "openid": u.openid, "tagid_list": []int{}}
	if u.subscribed {
		out = map[string]any{
			"subscribe":       1,
			"openid":          u.openid,
			"language":        "",
			"subscribe_time":  u.subscribeTime.Unix(),
			"remark":          "",
			"groupid":         0,
			"tagid_list":      []int{},
			"subscribe_scene": "ADD_SCENE_OTHERS",
			"qr_scene":        0,
			"qr_scene_str":    "",
		}
	}
	if u.unionid != "" {
		out["unionid"] = u.unionid
	}
	s.mu.Unlock()
	writeJSON(w, out)
}
