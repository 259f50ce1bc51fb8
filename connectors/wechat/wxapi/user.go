package wxapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// UserInfo is what user/info still returns: WeChat no longer gives
// nickname or avatar.
type UserInfo struct {
	OpenID     string
	UnionID    string // "" unless the account is bound to an Open Platform account
	Subscribed bool
	// SubscribeTime is the last follow (zero when not subscribed).
	SubscribeTime time.Time
}

type userInfoAnswer struct {
	Subscribe     int    `json:"subscribe"`
	OpenID        string `json:"openid"`
	UnionID       string `json:"unionid"`
	SubscribeTime int64  `json:"subscribe_time"`
}

// UserInfo fetches an Official Account follower's subscription state and
// unionid. Mini programs have no user/info (their unionid comes with the
// login session), so for KindMP it fails with conv.ErrInvalid without a call.
func (c *Client) UserInfo(ctx context.Context, openid string) (UserInfo, error) {
	const op = "wxapi.UserInfo"
	switch {
	case openid == "":
		return UserInfo{}, invalid(op, "empty openid")
	case c.kind == KindMP:
		return UserInfo{}, invalid(op, "mini programs have no user/info")
	}
	var a userInfoAnswer
	err := c.exec(ctx, request{
		op: op, method: http.MethodGet, path: PathUserInfo,
		query: url.Values{"openid": {openid}, "lang": {"zh_CN"}},
	}, jsonHandler(PathUserInfo, &a))
	if err != nil {
		return UserInfo{}, err
	}
	if a.OpenID != "" && a.OpenID != openid {
		return UserInfo{}, fmt.Errorf("%s: answer is for another openid: %w", op, conv.ErrUnavailable)
	}
	u := UserInfo{OpenID: openid, UnionID: a.UnionID, Subscribed: a.Subscribe == 1}
	if u.Subscribed && a.SubscribeTime > 0 {
		u.SubscribeTime = time.Unix(a.SubscribeTime, 0)
	}
	return u, nil
}
