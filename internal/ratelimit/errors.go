package ratelimit

import (
	"errors"
	"net/http"
)

// Errors returned by Check, each wrapped with a one-line reason. The add-leaf handler maps them to HTTP statuses
// with HTTPStatus; the wrapped message is the response body.
var (
	// ErrRateLimited means no limit applies to the submission or its limit is used up: 429.
	ErrRateLimited = errors.New("rate limited")
	// ErrBadToken means the submit token could not be verified: no key published under the domain verifies it,
	// or the DNS lookup failed. 403.
	ErrBadToken = errors.New("submit token not verified")
	// ErrMalformedToken means the sigsum-token header or its domain is not well formed: 400.
	ErrMalformedToken = errors.New("malformed submit token")
)

// HTTPStatus returns the HTTP status for an error from Check: 429, 403 or 400 for the errors above, 500 for
// anything else (which Check does not return; a nil error gives 200).
func HTTPStatus(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrRateLimited):
		return http.StatusTooManyRequests
	case errors.Is(err, ErrBadToken):
		return http.StatusForbidden
	case errors.Is(err, ErrMalformedToken):
		return http.StatusBadRequest
	default:
		return http.StatusInternalServerError
	}
}
