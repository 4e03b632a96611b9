package httpapi

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/cardvault/cardvault/vault"
	"github.com/labstack/echo/v4"
)

// status maps a domain error kind to an HTTP status, for every surface.
// statusClientClosed is recorded for a request whose client went away.
const statusClientClosed = 499

func status(k vault.Kind) int {
	switch k {
	case vault.KindInvalid:
		return http.StatusUnprocessableEntity
	case vault.KindNotFound:
		return http.StatusNotFound
	case vault.KindConflict:
		return http.StatusConflict
	case vault.KindUnauthorized:
		return http.StatusUnauthorized
	case vault.KindForbidden:
		return http.StatusForbidden
	case vault.KindUnavailable, vault.KindUnsupported:
		return http.StatusServiceUnavailable
	case vault.KindCrypto:
		return http.StatusBadRequest
	case vault.KindRateLimited:
		return http.StatusTooManyRequests
	}
	return http.StatusInternalServerError
}

// fromHTTPError turns echo's own errors (unknown route, wrong method, body
// too large, bad content) into domain errors, keeping echo's status where
// the domain kinds have no status of their own for it.
func fromHTTPError(he *echo.HTTPError) (*vault.Error, int) {
	switch he.Code {
	case http.StatusNotFound:
		return &vault.Error{Kind: vault.KindNotFound, Msg: "not found"}, he.Code
	case http.StatusUnauthorized:
		return &vault.Error{Kind: vault.KindUnauthorized, Field: "Authorization", Msg: "a bearer token is required"}, he.Code
	case http.StatusRequestEntityTooLarge:
		return &vault.Error{Kind: vault.KindInvalid, Field: "body", Msg: "request body is too large"}, he.Code
	case http.StatusUnsupportedMediaType:
		return &vault.Error{Kind: vault.KindInvalid, Field: "Content-Type", Msg: "must be application/json"}, he.Code
	}
	if he.Code >= 400 && he.Code < 500 {
		return &vault.Error{Kind: vault.KindInvalid, Msg: strings.ToLower(http.StatusText(he.Code))}, he.Code
	}
	return vault.Internal(he), http.StatusInternalServerError
}

// publicMessage is what a client may read: the domain message for client
// errors, a fixed text for everything the client cannot act on.
func publicMessage(e *vault.Error) string {
	switch e.Kind {
	case vault.KindInternal:
		return "internal error"
	case vault.KindUnavailable:
		return vault.ErrUnavailable.Msg
	case vault.KindCrypto:
		return vault.ErrCrypto.Msg
	}
	return e.Msg
}

// handleError is echo's error handler: the one place errors become
// responses. /api/ routes answer in Jiko's (FastAPI's) shape, all others in
// Solaris's. Internal causes go to the log with the request id, never to
// the client.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	if c.Request().Context().Err() != nil {
		// The client went away before the answer: nobody reads it, and
		// it is not the vault's failure. Recorded as 499 (nginx's
		// "client closed request"), so the 5xx alert does not page for a
		// client's disconnect; what the vault had done stands or rolled
		// back as its transaction did.
		_ = c.NoContent(statusClientClosed)
		return
	}
	var e *vault.Error
	var he *echo.HTTPError
	var code int
	switch {
	case errors.As(err, &e):
		code = status(e.Kind)
	case errors.As(err, &he):
		e, code = fromHTTPError(he)
		if code == http.StatusRequestEntityTooLarge {
			c.Response().Header().Set("Connection", "close")
		}
	default:
		e = vault.Internal(err)
		code = status(e.Kind)
	}
	reqID := c.Response().Header().Get(echo.HeaderXRequestID)
	if code >= 500 {
		// The cause, which the client never sees, is what the on-call
		// engineer needs; causes are built never to hold a secret.
		cause := "none recorded"
		if e.Err != nil {
			cause = e.Err.Error()
		}
		s.log.Error("request failed", "request_id", reqID, "route", c.Path(), "kind", int(e.Kind), "error", err, "cause", cause)
	}
	if e.Kind == vault.KindUnauthorized {
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="cardvault"`)
	}
	if e.RetryAfter == 0 && code == http.StatusServiceUnavailable {
		// The token or database is away; the adapter reconnects on the
		// next call, so a client may try again at once.
		c.Response().Header().Set(echo.HeaderRetryAfter, "1")
	}
	if e.RetryAfter > 0 {
		c.Response().Header().Set(echo.HeaderRetryAfter, strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds()))))
	}
	var body any
	if strings.HasPrefix(c.Request().URL.Path, "/api/") {
		body = jikoError(e, code)
	} else {
		// Solaris answers validation errors with 400.
		if code == http.StatusUnprocessableEntity {
			code = http.StatusBadRequest
		}
		body = solarisError(e, code, reqID)
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(code)
		return
	}
	_ = c.JSON(code, body)
}

// jikoError is FastAPI's shape: validation errors as a list with a
// location, everything else as a string.
func jikoError(e *vault.Error, code int) any {
	if code != http.StatusUnprocessableEntity {
		return map[string]any{"detail": publicMessage(e)}
	}
	loc := []string{location(e.Field)}
	if e.Field != "" && e.Field != "body" {
		// FastAPI spells a nested field as a path: a[b] is [..., "a", "b"].
		loc = append(loc, strings.FieldsFunc(e.Field, func(r rune) bool { return r == '[' || r == ']' })...)
	}
	typ := "value_error"
	if e.Field == "body" {
		typ = "json_invalid"
	}
	if strings.HasSuffix(e.Msg, "is required") {
		typ = "missing"
	}
	return map[string]any{"detail": []map[string]any{{"loc": loc, "msg": publicMessage(e), "type": typ}}}
}

// location says where a field came from, in FastAPI's words.
func location(field string) string {
	switch field {
	case "account_id", "card_id", "id":
		return "path"
	case "limit", "cursor", "filter[status]":
		return "query"
	case "Idempotency-Key", "x-jiko-idempotency", "Authorization":
		return "header"
	}
	return "body"
}

type solarisErrorItem struct {
	ID     string         `json:"id"`
	Status int            `json:"status"`
	Code   string         `json:"code"`
	Title  string         `json:"title"`
	Detail string         `json:"detail"`
	Source *solarisSource `json:"source,omitempty"`
}

type solarisSource struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// solarisError is Solaris's {"errors":[…]} shape.
func solarisError(e *vault.Error, code int, reqID string) any {
	codes := map[vault.Kind][2]string{
		vault.KindInvalid:      {"validation_error", "Validation Error"},
		vault.KindNotFound:     {"not_found", "Not Found"},
		vault.KindConflict:     {"conflict", "Conflict"},
		vault.KindUnauthorized: {"unauthorized", "Unauthorized"},
		vault.KindForbidden:    {"forbidden", "Forbidden"},
		vault.KindUnavailable:  {"service_unavailable", "Service Unavailable"},
		vault.KindCrypto:       {"invalid_encryption", "Invalid Encryption"},
		vault.KindRateLimited:  {"rate_limited", "Too Many Requests"},
		vault.KindUnsupported:  {"mechanism_unsupported", "Service Unavailable"},
		vault.KindInternal:     {"generic_error", "Internal Server Error"},
	}
	cd := codes[e.Kind]
	detail := publicMessage(e)
	if e.Field != "" && detail == e.Msg {
		detail = e.Field + ": " + e.Msg
	}
	item := solarisErrorItem{ID: reqID, Status: code, Code: cd[0], Title: cd[1], Detail: detail}
	if e.Field != "" {
		item.Source = &solarisSource{Field: e.Field, Message: publicMessage(e)}
	}
	return map[string]any{"errors": []solarisErrorItem{item}}
}
