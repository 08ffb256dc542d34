package main

import "net/http"

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
func answerFor(id identity, routeErr error, v verdict) answer {
	switch {
	case id.anonymous && (routeErr != nil || !v.allowed):
		// A refused anonymous caller is asked to log in: docker sends credentials only
		// after a challenge.
		return answer{http.StatusUnauthorized, "unauthorized", "missing_credentials"}
	case routeErr != nil:
		return answer{http.StatusForbidden, "denied", routeErr.Error()}
	case v.allowed:
		return answer{http.StatusOK, "allowed", v.reason}
	case v.reason == "mount_source_not_readable":
		// The upload itself is granted: send the client to a plain one.
		return answer{http.StatusTemporaryRedirect, "redirected", v.reason}
	}
	return answer{http.StatusForbidden, "denied", v.reason}
}
