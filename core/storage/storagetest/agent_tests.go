package storagetest

import (
	"crypto/sha256"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// testAgents: every field round-trips (GroupIDs as a set); email is unique
// per tenant case-insensitively and matched case-insensitively.
func testAgents(t *testing.T, h Harness) {
	e := newEnv(t, h)
	a, b := e.tenant("acme"), e.tenant("globex")
	g1, g2 := conv.NewID[conv.GroupID](e.ids), conv.NewID[conv.GroupID](e.ids)
	alice := conv.Agent{ID: conv.NewID[conv.AgentID](e.ids), TenantID: a, Email: "Alice@Example.COM", Name: "Alice 爱丽丝",
		Role: conv.RoleAdmin, PasswordHash: "$argon2id$v=19$m=65536,t=3,p=2$c2FsdA$aGFzaA", Capacity: 7,
		GroupIDs: []conv.GroupID{g2, g1}, CreatedAt: now()}
	bob := conv.Agent{ID: conv.NewID[conv.AgentID](e.ids), TenantID: a, Email: "bob@example.com", Name: "Bob",
		Role: conv.RoleAgent, Capacity: conv.DefaultCapacity, Disabled: true, CreatedAt: now().Add(time.Second)}
	e.tx(a, func(tx storage.Tx) error {
		for _, g := range []conv.GroupID{g1, g2} {
			if err := tx.CreateGroup(e.ctx, conv.Group{ID: g, TenantID: a, Name: "g" + g.String(), CreatedAt: now()}); err != nil {
				return err
			}
		}
		if err := tx.CreateAgent(e.ctx, alice); err != nil {
			return err
		}
		return tx.CreateAgent(e.ctx, bob)
	})
	e.tx(a, func(tx storage.Tx) error {
		for _, want := range []conv.Agent{alice, bob} {
			got, err := tx.Agent(e.ctx, want.ID)
			ok(t, "Agent", err)
			same(t, "Agent "+want.Name, normAgent(got), normAgent(want))
		}
		for _, email := range []string{"alice@example.com", "ALICE@EXAMPLE.COM", "Alice@Example.COM"} {
			got, err := tx.AgentByEmail(e.ctx, email)
			ok(t, "AgentByEmail "+email, err)
			same(t, "AgentByEmail "+email, normAgent(got), normAgent(alice))
		}
		list, err := tx.Agents(e.ctx)
		ok(t, "Agents", err)
		for i := range list {
			list[i] = normAgent(list[i])
		}
		slices.SortFunc(list, func(x, y conv.Agent) int { return int(x.ID - y.ID) })
		same(t, "Agents", list, []conv.Agent{normAgent(alice), normAgent(bob)})

		_, err = tx.Agent(e.ctx, 1234)
		wantKind(t, "Agent(unknown)", err, conv.ErrNotFound)
		_, err = tx.AgentByEmail(e.ctx, "carol@example.com")
		wantKind(t, "AgentByEmail(unknown)", err, conv.ErrNotFound)
		return nil
	})

	conflicts := []struct {
		name  string
		agent conv.Agent
	}{
		{"same email, other case", conv.Agent{ID: conv.NewID[conv.AgentID](e.ids), TenantID: a, Email: "alice@EXAMPLE.com",
			Name: "Imposter", Role: conv.RoleAgent, CreatedAt: now()}},
		{"same id", conv.Agent{ID: alice.ID, TenantID: a, Email: "carol@example.com", Name: "Carol", Role: conv.RoleAgent, CreatedAt: now()}},
	}
	for _, tc := range conflicts {
		t.Run(tc.name, func(t *testing.T) {
			err := e.txErr(a, func(tx storage.Tx) error { return tx.CreateAgent(e.ctx, tc.agent) })
			wantKind(t, "CreateAgent", err, conv.ErrConflict)
		})
	}

	// The same address is a different agent in another tenant.
	aliceB := conv.Agent{ID: conv.NewID[conv.AgentID](e.ids), TenantID: b, Email: "alice@example.com", Name: "Alice at B",
		Role: conv.RoleAgent, CreatedAt: now()}
	e.tx(b, func(tx storage.Tx) error { return tx.CreateAgent(e.ctx, aliceB) })
	e.tx(b, func(tx storage.Tx) error {
		got, err := tx.AgentByEmail(e.ctx, "ALICE@example.com")
		ok(t, "AgentByEmail in B", err)
		same(t, "AgentByEmail in B", normAgent(got), normAgent(aliceB))
		_, err = tx.Agent(e.ctx, alice.ID)
		wantKind(t, "Agent of another tenant", err, conv.ErrNotFound)
		list, err := tx.Agents(e.ctx)
		ok(t, "Agents in B", err)
		if len(list) != 1 || list[0].ID != aliceB.ID {
			t.Fatalf("tenant B lists %+v, want only its own agent", list)
		}
		return nil
	})
}

// testGroups: groups round-trip with their skills, per tenant.
func testGroups(t *testing.T, h Harness) {
	e := newEnv(t, h)
	a, b := e.tenant("acme"), e.tenant("globex")
	sales := conv.Group{ID: conv.NewID[conv.GroupID](e.ids), TenantID: a, Name: "Sales", Skills: []string{"billing", "中文", "vip"}, CreatedAt: now()}
	support := conv.Group{ID: conv.NewID[conv.GroupID](e.ids), TenantID: a, Name: "Support", CreatedAt: now()}
	e.tx(a, func(tx storage.Tx) error {
		if err := tx.CreateGroup(e.ctx, sales); err != nil {
			return err
		}
		return tx.CreateGroup(e.ctx, support)
	})
	e.tx(a, func(tx storage.Tx) error {
		list, err := tx.Groups(e.ctx)
		ok(t, "Groups", err)
		for i := range list {
			list[i] = normGroup(list[i])
		}
		slices.SortFunc(list, func(x, y conv.Group) int { return int(x.ID - y.ID) })
		same(t, "Groups", list, []conv.Group{normGroup(sales), normGroup(support)})
		return nil
	})
	e.tx(b, func(tx storage.Tx) error {
		list, err := tx.Groups(e.ctx)
		ok(t, "Groups in B", err)
		if len(list) != 0 {
			t.Fatalf("tenant B lists %d of tenant A's groups", len(list))
		}
		return nil
	})
	dup := support
	dup.Name = "Again"
	wantKind(t, "CreateGroup(duplicate id)",
		e.txErr(a, func(tx storage.Tx) error { return tx.CreateGroup(e.ctx, dup) }), conv.ErrConflict)
}

// testTokens: TokenByHash finds a token active or not; RevokeToken stamps
// RevokedAt; neither reaches another tenant's tokens.
func testTokens(t *testing.T, h Harness) {
	e := newEnv(t, h)
	a, b := e.tenant("acme"), e.tenant("globex")
	agent := conv.Agent{ID: conv.NewID[conv.AgentID](e.ids), TenantID: a, Email: "a@example.com", Name: "A", Role: conv.RoleAgent, CreatedAt: now()}
	e.tx(a, func(tx storage.Tx) error { return tx.CreateAgent(e.ctx, agent) })
	hash := func(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }
	live := conv.Token{ID: conv.NewID[conv.TokenID](e.ids), TenantID: a, AgentID: agent.ID,
		Hash: append([]byte{0, 0xff}, hash("live")[2:]...), CreatedAt: now(), ExpiresAt: now().Add(24 * time.Hour)}
	expired := conv.Token{ID: conv.NewID[conv.TokenID](e.ids), TenantID: a, AgentID: agent.ID,
		Hash: hash("expired"), CreatedAt: now().Add(-48 * time.Hour), ExpiresAt: now().Add(-24 * time.Hour)}
	e.tx(a, func(tx storage.Tx) error {
		if err := tx.CreateToken(e.ctx, live); err != nil {
			return err
		}
		return tx.CreateToken(e.ctx, expired)
	})
	byHash := func(tenant conv.TenantID, h []byte) (conv.Token, error) {
		var got conv.Token
		err := e.txErr(tenant, func(tx storage.Tx) error {
			var err error
			got, err = tx.TokenByHash(e.ctx, h)
			return err
		})
		return got, err
	}
	for _, want := range []conv.Token{live, expired} {
		got, err := byHash(a, want.Hash)
		ok(t, "TokenByHash", err)
		same(t, "TokenByHash", normToken(got), normToken(want))
	}
	_, err := byHash(a, hash("unknown"))
	wantKind(t, "TokenByHash(unknown)", err, conv.ErrNotFound)
	_, err = byHash(b, live.Hash)
	wantKind(t, "TokenByHash of another tenant", err, conv.ErrNotFound)

	wantKind(t, "RevokeToken of another tenant",
		e.txErr(b, func(tx storage.Tx) error { return tx.RevokeToken(e.ctx, live.ID, now()) }), conv.ErrNotFound)
	if got, _ := byHash(a, live.Hash); got.RevokedAt != nil {
		t.Fatal("tenant B revoked tenant A's token")
	}
	wantKind(t, "RevokeToken(unknown)",
		e.txErr(a, func(tx storage.Tx) error { return tx.RevokeToken(e.ctx, 5150, now()) }), conv.ErrNotFound)

	revokedAt := now()
	e.tx(a, func(tx storage.Tx) error { return tx.RevokeToken(e.ctx, live.ID, revokedAt) })
	got, err := byHash(a, live.Hash)
	ok(t, "TokenByHash(revoked)", err)
	want := live
	want.RevokedAt = &revokedAt
	same(t, "revoked token", normToken(got), normToken(want))
	if got, _ := byHash(a, expired.Hash); got.RevokedAt != nil {
		t.Fatal("RevokeToken revoked another token too")
	}

	dup := expired
	dup.ID = conv.NewID[conv.TokenID](e.ids)
	wantKind(t, "CreateToken(duplicate hash)",
		e.txErr(a, func(tx storage.Tx) error { return tx.CreateToken(e.ctx, dup) }), conv.ErrConflict)
}
