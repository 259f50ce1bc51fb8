package main

import (
	"github.com/switchboard-hq/switchboard/connectors/email"
	"github.com/switchboard-hq/switchboard/connectors/wechat"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/hub"
)

// kinds is the channel kinds this build knows, with the config fields that
// are secrets. Connectors refine their entry (Required, Check) as they land.
func kinds() *hub.Registry {
	wx := wechat.Kinds()
	return hub.NewRegistry(
		hub.Kind{Name: conv.KindWebchat, Secrets: []string{"identity_secret"}},
		wx[0], wx[1],
		email.Kind(),
		hub.Kind{Name: conv.KindVoice, Secrets: []string{"turn_secret"}},
		// The loopback channel the test suites and `bench` use.
		hub.Kind{Name: conv.KindTest, Secrets: []string{"secret"}},
	)
}
