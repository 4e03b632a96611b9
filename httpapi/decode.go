package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"mime"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/cardvault/cardvault/internal/clienttext"
	"github.com/cardvault/cardvault/vault"
	"github.com/labstack/echo/v4"
)

// readBody reads the request body, which the body-limit middleware caps.
// Callers clear it once decoded when it may hold card data. The body must
// be declared JSON, as api/openapi.yaml says: a form or text/plain body
// is what a cross-site form sends without a preflight, and is refused
// with 415 before it is read.
func readBody(c echo.Context) ([]byte, error) {
	// A request with no body and no type is told the body is required.
	ct, r := c.Request().Header.Get(echo.HeaderContentType), c.Request()
	if media, _, err := mime.ParseMediaType(ct); (ct != "" || r.ContentLength != 0) && (err != nil || media != echo.MIMEApplicationJSON) {
		return nil, echo.NewHTTPError(http.StatusUnsupportedMediaType) // errors.go names the header
	}
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
// Keys must match dst's field names exactly: encoding/json alone would
// take {"PAN": …} for "pan", and ignore a field the caller thought
// mattered.
func decodeJSON(body []byte, dst any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return vault.Invalid("body", "is required")
	}
	if err := checkKeys(body, reflect.TypeOf(dst), ""); err != nil {
		return err
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

// jsonRef is a JSON value left undecoded: a slice of the body, never a
// copy, so checking keys leaves no copy of card data behind.
type jsonRef []byte

func (r *jsonRef) UnmarshalJSON(b []byte) error {
	*r = b
	return nil
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// fieldsByType caches jsonFields: request types are few and fixed.
var fieldsByType sync.Map // reflect.Type → map[string]reflect.Type

// jsonFields maps a struct type's JSON names to their field types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if f, ok := fieldsByType.Load(t); ok {
		return f.(map[string]reflect.Type)
	}
	fields := map[string]reflect.Type{}
	for _, f := range reflect.VisibleFields(t) {
		if !f.IsExported() || f.Anonymous {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	fieldsByType.Store(t, fields)
	return fields
}

// checkKeys refuses, by name, the first key (in sorted order) of a JSON
// object that is not exactly a field of t, and checks nested objects of
// struct-typed fields the same way. A body that is not an object is left
// for the typed decode to name.
func checkKeys(body []byte, t reflect.Type, prefix string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	var obj map[string]jsonRef
	if json.Unmarshal(body, &obj) != nil {
		return nil
	}
	fields := jsonFields(t)
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		path := k
		if prefix != "" {
			path = prefix + "[" + k + "]"
		}
		ft, ok := fields[k]
		if !ok {
			if clienttext.Name(k) != k {
				// Never echo what is not a name: it may be card data
				// (FuzzRoutes found {"A000000000000":""} echoed once).
				where := prefix
				if where == "" {
					where = "body"
				}
				return vault.Invalid(where, "has a field that is not known")
			}
			return vault.Invalid(path, "is not a known field")
		}
		if err := checkKeys(obj[k], ft, path); err != nil {
			return err
		}
	}
	return nil
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
		Surface: c.Request().Method + " " + c.Path(),
		Key:     key,
		Request: request,
	}, nil
}
