package wechattest

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// handleToken is GET /cgi-bin/token: every call mints a new token, and the
// app's previous one stays valid for TokenOverlap more.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	a, e := s.credentialsLocked(q.Get("grant_type"), q.Get("appid"), q.Get("secret"))
	if e == nil && s.cfg.TokenDailyQuota > 0 {
		if d := dayKey(s.now()); a.tokenDay != d {
			a.tokenDay, a.tokenCalls = d, 0
		}
		if a.tokenCalls >= s.cfg.TokenDailyQuota {
			e = &errDailyQuota
		} else {
			a.tokenCalls++
		}
	}
	if e != nil {
		s.mu.Unlock()
		s.writeErr(w, r, *e)
		return
	}
	now := s.now()
	if old := s.tokens[a.token]; old != nil && old.deadline.IsZero() {
		old.deadline = minTime(old.expires, now.Add(s.cfg.TokenOverlap))
	}
	tok, rec := s.mintLocked(a, false, now)
	a.token = tok
	ttl := rec.expires.Sub(now)
	s.mu.Unlock()
	writeJSON(w, map[string]any{"access_token": tok, "expires_in": int(ttl / time.Second)})
}

// handleStableToken is POST /cgi-bin/stable_token. Its tokens are
// separate from /cgi-bin/token's: neither invalidates the other. A normal
// call returns the current token, rolling it over TokenOverlap before it
// expires (the old one lives out its lifetime); force_refresh mints a new
// one and invalidates the previous at once, at most ForceRefreshPerDay
// times a day and not twice within ForceRefreshInterval (the second call
// just gets the current token).
func (s *Server) handleStableToken(w http.ResponseWriter, r *http.Request) {
	obj, _, e := s.readJSONBody(r)
	if e != nil {
		s.writeErr(w, r, *e)
		return
	}
	force := false
	if raw, ok := obj["force_refresh"]; ok && string(raw) != "null" {
		switch string(raw) {
		case "true":
			force = true
		case "false":
		default:
			s.writeErr(w, r, errDataFormat)
			return
		}
	}
	grant, _ := str(obj, "grant_type")
	appID, _ := str(obj, "appid")
	secret, _ := str(obj, "secret")

	s.mu.Lock()
	a, e := s.credentialsLocked(grant, appID, secret)
	if e != nil {
		s.mu.Unlock()
		s.writeErr(w, r, *e)
		return
	}
	now := s.now()
	cur := s.tokens[a.stable]
	valid := cur != nil && now.Before(cur.expires) && cur.deadline.IsZero()
	tok, rec := a.stable, cur
	switch {
	case force:
		if d := dayKey(now); a.forceDay != d {
			a.forceDay, a.forceCount = d, 0
		}
		if valid && s.cfg.ForceRefreshInterval > 0 && !a.lastForce.IsZero() && now.Sub(a.lastForce) < s.cfg.ForceRefreshInterval {
			break // documented: too soon after the last forced refresh, no refresh
		}
		if s.cfg.ForceRefreshPerDay > 0 && a.forceCount >= s.cfg.ForceRefreshPerDay {
			s.mu.Unlock()
			s.writeErr(w, r, errDailyQuota)
			return
		}
		a.forceCount++
		a.lastForce = now
		if cur != nil && cur.deadline.IsZero() {
			cur.deadline = now
		}
		tok, rec = s.mintLocked(a, true, now)
		a.stable = tok
	case !valid || cur.expires.Sub(now) <= s.cfg.TokenOverlap:
		tok, rec = s.mintLocked(a, true, now)
		a.stable = tok
	}
	ttl := rec.expires.Sub(now)
	s.mu.Unlock()
	writeJSON(w, map[string]any{"access_token": tok, "expires_in": int(ttl / time.Second)})
}

// credentialsLocked checks a token request's grant_type, appid and secret
// in the order WeChat reports them.
func (s *Server) credentialsLocked(grant, appID, secret string) (*app, *apiErr) {
	if grant != "client_credential" {
		return nil, &errGrantType
	}
	if appID == "" {
		return nil, &errAppIDMissing
	}
	a := s.apps[appID]
	if a == nil || !a.configured {
		return nil, &errAppID
	}
	if secret == "" {
		return nil, &errSecretMissing
	}
	if secret != a.secret {
		return nil, &errSecret
	}
	return a, nil
}

func (s *Server) mintLocked(a *app, stable bool, now time.Time) (string, *tokenRec) {
	tok := randomID(96)
	rec := &tokenRec{appID: a.id, stable: stable, expires: now.Add(s.cfg.TokenTTL)}
	s.tokens[tok] = rec
	s.issued++
	s.notifyLocked()
	return tok, rec
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

var errTooLarge = errors.New("body too large")

// readCapped reads at most max bytes; a longer body is an error, not a
// truncation.
func readCapped(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if int64(len(b)) > max {
		return nil, errTooLarge
	}
	return b, nil
}
