package main

import "testing"

// TestPushGroupPolicy: any valid user pulls; only the push group pushes and deletes; an
// action the policy does not know is denied.
func TestPushGroupPolicy(t *testing.T) {
	t.Parallel()
	snap := &snapshot{groups: map[string]map[string]bool{"pusher": {"alice": true}, "other": {"bob": true}}}
	p := pushGroupPolicy{group: "pusher"}
	tests := []struct {
		user   string
		action action
		ok     bool
		reason string
	}{
		{"alice", actionPull, true, "valid_user"},
		{"alice", actionPush, true, "push_group_member"},
		{"alice", actionDelete, true, "push_group_member"},
		{"bob", actionPull, true, "valid_user"},
		{"bob", actionPush, false, "not_in_push_group"},
		{"bob", actionDelete, false, "not_in_push_group"},
		{"alice", "", false, "unknown_action_"},
		{"alice", "admin", false, "unknown_action_admin"},
	}
	for _, tt := range tests {
		ok, reason := p.allow(snap, tt.user, registryRequest{action: tt.action})
		if ok != tt.ok || reason != tt.reason {
			t.Errorf("%s %q: got %v %q, want %v %q", tt.user, tt.action, ok, reason, tt.ok, tt.reason)
		}
	}
}
