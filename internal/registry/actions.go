package registry

import "strings"

// Actions is a set of the actions distribution knows on a repository, as bits.
type Actions uint8

// The actions: reading, writing and deleting in a repository.
const (
	Pull Actions = 1 << iota
	Push
	Delete
)

// actionNames are the actions' names, in the policy file and in logs.
var actionNames = []struct {
	action Actions
	name   string
}{{Pull, "pull"}, {Push, "push"}, {Delete, "delete"}}

// String lists the actions as "pull,push"; the empty set is "none".
func (s Actions) String() string {
	if int(s) < len(actionSetNames) {
		return actionSetNames[s]
	}
	return actionSetName(s)
}

// actionSetNames are String's answers for every set of the three actions, made once so that
// naming a set in a decision's log line costs nothing.
var actionSetNames = func() (names [Delete << 1]string) {
	for s := range names {
		names[s] = actionSetName(Actions(s))
	}
	return names
}()

func actionSetName(s Actions) string {
	var names []string
	for _, a := range actionNames {
		if s&a.action != 0 {
			names = append(names, a.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

// ParseAction is the action a policy file names, or false for a name that is none.
func ParseAction(name string) (Actions, bool) {
	for _, a := range actionNames {
		if a.name == name {
			return a.action, true
		}
	}
	return 0, false
}
