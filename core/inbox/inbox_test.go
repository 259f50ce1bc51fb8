package inbox_test

import (
	"slices"
	"testing"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/inbox"
)

func TestConcerned(t *testing.T) {
	g := conv.GroupID(9)
	agents := []conv.Agent{
		{ID: 1, GroupIDs: []conv.GroupID{g}},
		{ID: 2},
		{ID: 3, GroupIDs: []conv.GroupID{g}, Disabled: true},
	}
	tests := []struct {
		name     string
		c        conv.Conversation
		previous conv.AgentID
		want     []conv.AgentID
	}{
		{"assigned: the assignee", conv.Conversation{Status: conv.StatusOpen, AssigneeID: 2}, 0, []conv.AgentID{2}},
		{"reassigned: both", conv.Conversation{Status: conv.StatusOpen, AssigneeID: 2}, 1, []conv.AgentID{2, 1}},
		{"queued without group: every enabled agent", conv.Conversation{Status: conv.StatusOpen}, 0, []conv.AgentID{1, 2}},
		{"queued in a group: its enabled members", conv.Conversation{Status: conv.StatusOpen, GroupID: g}, 0, []conv.AgentID{1}},
		{"back to the queue: the previous assignee too", conv.Conversation{Status: conv.StatusOpen, GroupID: g}, 2, []conv.AgentID{2, 1}},
		{"resolved and unassigned: nobody", conv.Conversation{Status: conv.StatusResolved}, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := inbox.Concerned(tt.c, tt.previous, agents); !slices.Equal(got, tt.want) {
				t.Fatalf("Concerned = %v, want %v", got, tt.want)
			}
		})
	}
}
