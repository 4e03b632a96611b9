package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"regexp"
	"strings"

	"github.com/cardvault/cardvault/vault"
	"github.com/labstack/echo/v4"
)

// readBody reads the request body, which the body-limit middleware caps.
// Callers clear it once decoded when it may hold card data.
func readBody(c echo.Context) ([]byte, error) {
	b, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var he *echo.HTTPError
		if errors.As(err, &he) {
			return nil, he
		}
		return nil, vault.Invalid("body", "could not be read")
	}
	return b, nil
}

// bindJSON reads and decodes a body that holds no card data.
func bindJSON(c echo.Context, dst any) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	return decodeJSON(body, dst)
}

// reqField is a required field and whether the request lacks it.
type reqField struct {
	name    string
	missing bool
}

// requireFields names the first required field the request lacks.
func requireFields(fields ...reqField) error {
	for _, f := range fields {
		if f.missing {
			return vault.Invalid(f.name, "is required")
		}
	}
	return nil
}

// decodeJSON decodes a JSON object into dst and names the field at fault.
// Unknown fields are ignored, as the providers' APIs do.
func decodeJSON(body []byte, dst any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return vault.Invalid("body", "is required")
	}
	err := json.Unmarshal(body, dst)
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &syn):
		return vault.Invalid("body", "must be valid JSON")
	case errors.As(err, &typ):
		if typ.Field == "" {
			return vault.Invalid("body", "must be a JSON object")
		}
		return vault.Invalid(bracketPath(typ.Field), "must be a "+jsonKind(typ.Type.Kind().String()))
	default:
		var ve *vault.Error
		if errors.As(err, &ve) {
			return ve
		}
		return vault.Invalid("body", "must be valid JSON")
	}
}

// bracketPath spells a nested field as the APIs do: "jwe.alg" is
// "jwe[alg]".
func bracketPath(path string) string {
	parts := strings.Split(path, ".")
	out := parts[0]
	for _, p := range parts[1:] {
		out += "[" + p + "]"
	}
	return out
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string", "slice":
		return "string"
	case "int", "int64", "uint32", "float64":
		return "number"
	case "struct", "map", "ptr":
		return "JSON object"
	case "bool":
		return "boolean"
	}
	return goKind
}

// secretDigits is a JSON string of card data decoded straight into a byte
// slice the handler can clear; a Go string could not be cleared. Anything
// but a plain string decodes to an empty value, which the domain's
// validation then refuses under the field's own name.
type secretDigits []byte

func (d *secretDigits) UnmarshalJSON(b []byte) error {
	*d = secretDigits{}
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return nil
	}
	inner := b[1 : len(b)-1]
	if bytes.IndexByte(inner, '\\') >= 0 {
		return nil // digits never need escapes
	}
	*d = append(*d, inner...)
	return nil
}

var idemPattern = regexp.MustCompile(`^[\x21-\x7e]{1,255}$`)

// idempotencyKey reads x-jiko-idempotency or Idempotency-Key. The scope is
// the caller, the route and the owner, so keys never collide across them;
// the request hash catches a key reused for a different request.
func idempotencyKey(c echo.Context, owner string, body []byte) (*vault.IdemKey, error) {
	jiko := c.Request().Header.Get("x-jiko-idempotency")
	std := c.Request().Header.Get("Idempotency-Key")
	key, field := jiko, "x-jiko-idempotency"
	switch {
	case jiko == "" && std == "":
		return nil, nil
	case jiko == "":
		key, field = std, "Idempotency-Key"
	case std != "" && std != jiko:
		return nil, vault.Invalid("Idempotency-Key", "differs from x-jiko-idempotency")
	}
	if !idemPattern.MatchString(key) {
		return nil, vault.Invalid(field, "must be 1 to 255 printable characters")
	}
	// The request as received; the service stores only its keyed digest.
	// Callers whose body holds card data clear it with the body.
	request := make([]byte, 0, len(c.Request().Method)+len(c.Request().URL.Path)+2+len(body))
	request = append(append(append(append(request, c.Request().Method...), ' '), c.Request().URL.Path...), '\n')
	request = append(request, body...)
	tok, _ := c.Get(callerKey).(apiToken)
	return &vault.IdemKey{
		Scope:   tok.name + " " + c.Request().Method + " " + c.Path() + " " + owner,
		Key:     key,
		Request: request,
	}, nil
}
