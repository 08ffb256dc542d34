package main

import (
	"net/http"

	"github.com/registry-auth/registry-auth/internal/policy"
)

// answer is what /auth answers a request once its caller is known: the status, and the
// result and reason of the decision's log line and metrics.
type answer struct {
	status         int
	result, reason string
}

// answerFor turns the route check and the policy's verdict into the answer: the one place
// that decides it, for the handler and for explain. routeErr is why the request is no route
// the service allows (then v is not consulted); a refused mount whose upload is granted is a
// 307 to a plain upload, which the handler builds from the forwarded headers.
func answerFor(id policy.Identity, routeErr error, v policy.Verdict) answer {
	switch {
	case id.Anonymous && (routeErr != nil || !v.Allowed):
		// A refused anonymous caller is asked to log in: docker sends credentials only
		// after a challenge.
		return answer{http.StatusUnauthorized, "unauthorized", "missing_credentials"}
	case routeErr != nil:
		return answer{http.StatusForbidden, "denied", routeErr.Error()}
	case v.Allowed:
		return answer{http.StatusOK, "allowed", v.Reason}
	case v.Reason == "mount_source_not_readable":
		// The upload itself is granted: send the client to a plain one.
		return answer{http.StatusTemporaryRedirect, "redirected", v.Reason}
	}
	return answer{http.StatusForbidden, "denied", v.Reason}
}
