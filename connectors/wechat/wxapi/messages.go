package wxapi

import (
	"context"
	"fmt"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Link is a link card. A mini program sends it as "link" (thumb_url); an
// Official Account as "news" with one article (picurl).
type Link struct {
	Title       string // required
	Description string
	URL         string // required
	ThumbURL    string // the picture shown on the card
}

// MiniProgramPage is a mini-program card.
type MiniProgramPage struct {
	Title        string // required
	AppID        string // the mini program's appid: required from an Official Account, not sent by a mini program
	PagePath     string // required
	ThumbMediaID string // required: an uploaded image's media_id
}

// outMsg is the customer-service message body: touser, msgtype, then the
// object named by msgtype.
type outMsg struct {
	ToUser          string    `json:"touser"`
	MsgType         string    `json:"msgtype"`
	Text            *textObj  `json:"text,omitempty"`
	Image           *mediaObj `json:"image,omitempty"`
	Link            *linkObj  `json:"link,omitempty"`
	News            *newsObj  `json:"news,omitempty"`
	MiniProgramPage *mppObj   `json:"miniprogrampage,omitempty"`
}

type textObj struct {
	Content string `json:"content"`
}

type mediaObj struct {
	MediaID string `json:"media_id"`
}

type linkObj struct {
	Title       string `json:"title"`
	Description string `json:"description,omitempty"`
	URL         string `json:"url"`
	ThumbURL    string `json:"thumb_url,omitempty"`
}

type newsObj struct {
	Articles []article `json:"articles"`
}

type article struct {
	Title       string `json:"title"`
	Description string `json:"description,omitempty"`
	URL         string `json:"url"`
	PicURL      string `json:"picurl,omitempty"`
}

type mppObj struct {
	Title        string `json:"title"`
	AppID        string `json:"appid,omitempty"`
	PagePath     string `json:"pagepath"`
	ThumbMediaID string `json:"thumb_media_id"`
}

func invalid(op, what string) error { return fmt.Errorf("%s: %w: %s", op, conv.ErrInvalid, what) }

// SendText sends a text customer-service message.
func (c *Client) SendText(ctx context.Context, openid, text string) error {
	const op = "wxapi.SendText"
	switch {
	case openid == "":
		return invalid(op, "empty openid")
	case text == "":
		return invalid(op, "empty text")
	}
	return c.postJSON(ctx, op, PathSend, outMsg{ToUser: openid, MsgType: "text", Text: &textObj{text}})
}

// SendImage sends an uploaded image (its media_id).
func (c *Client) SendImage(ctx context.Context, openid, mediaID string) error {
	const op = "wxapi.SendImage"
	switch {
	case openid == "":
		return invalid(op, "empty openid")
	case mediaID == "":
		return invalid(op, "empty media_id")
	}
	return c.postJSON(ctx, op, PathSend, outMsg{ToUser: openid, MsgType: "image", Image: &mediaObj{mediaID}})
}

// SendLink sends a link card: "link" from a mini program, "news" with one
// article from an Official Account.
func (c *Client) SendLink(ctx context.Context, openid string, l Link) error {
	const op = "wxapi.SendLink"
	switch {
	case openid == "":
		return invalid(op, "empty openid")
	case l.Title == "" || l.URL == "":
		return invalid(op, "a link needs a title and a URL")
	}
	m := outMsg{ToUser: openid}
	if c.kind == KindMP {
		m.MsgType = "link"
		m.Link = &linkObj{Title: l.Title, Description: l.Description, URL: l.URL, ThumbURL: l.ThumbURL}
	} else {
		m.MsgType = "news"
		m.News = &newsObj{Articles: []article{{Title: l.Title, Description: l.Description, URL: l.URL, PicURL: l.ThumbURL}}}
	}
	return c.postJSON(ctx, op, PathSend, m)
}

// SendMiniProgramPage sends a mini-program card. An Official Account must
// name the mini program (p.AppID); a mini program sends its own pages and
// p.AppID is not sent.
func (c *Client) SendMiniProgramPage(ctx context.Context, openid string, p MiniProgramPage) error {
	const op = "wxapi.SendMiniProgramPage"
	switch {
	case openid == "":
		return invalid(op, "empty openid")
	case p.Title == "" || p.PagePath == "" || p.ThumbMediaID == "":
		return invalid(op, "a mini-program page needs a title, a page path and a thumb media_id")
	case c.kind == KindOA && p.AppID == "":
		return invalid(op, "an Official Account must name the mini program's appid")
	}
	obj := &mppObj{Title: p.Title, PagePath: p.PagePath, ThumbMediaID: p.ThumbMediaID}
	if c.kind == KindOA {
		obj.AppID = p.AppID
	}
	return c.postJSON(ctx, op, PathSend, outMsg{ToUser: openid, MsgType: "miniprogrampage", MiniProgramPage: obj})
}

// Typing shows (on) or clears the "typing" state in the user's chat.
// WeChat refuses Typing without a message exchanged recently (45080) and
// a second Typing while one lasts (45081).
func (c *Client) Typing(ctx context.Context, openid string, on bool) error {
	const op = "wxapi.Typing"
	if openid == "" {
		return invalid(op, "empty openid")
	}
	cmd := "CancelTyping"
	if on {
		cmd = "Typing"
	}
	return c.postJSON(ctx, op, PathTyping, struct {
		ToUser  string `json:"touser"`
		Command string `json:"command"`
	}{openid, cmd})
}
