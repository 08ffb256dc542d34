package main

import "fmt"

// policy decides whether an authenticated user may do what req asks. Implementations must
// be safe for concurrent use. reason is a short snake_case word for logs and metrics.
type policy interface {
	allow(snap *snapshot, user string, req registryRequest) (ok bool, reason string)
}

// pushGroupPolicy is the Apache recipe's rule: any valid user may pull, members of one group
// may push and delete.
type pushGroupPolicy struct{ group string }

func (p pushGroupPolicy) allow(snap *snapshot, user string, req registryRequest) (bool, string) {
	switch req.action {
	case actionPull:
		return true, "valid_user"
	case actionPush, actionDelete:
		if snap.inGroup(user, p.group) {
			return true, "push_group_member"
		}
		return false, "not_in_push_group"
	}
	return false, fmt.Sprintf("unknown_action_%s", req.action)
}
