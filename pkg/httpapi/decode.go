package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/clientid"
	"github.com/gatewayworker/gatewayworker/pkg/api"
)

// decodeBody reads r's body as one JSON object into dst. An empty body is
// an empty object. Fields dst does not have are refused, so a misspelt
// field is an error rather than a silently missing value.
func decodeBody(r *http.Request, dst any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(dst); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return jsonError(err)
	}
	var extra json.RawMessage
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
		return nil
	case err == nil:
		return errorf(http.StatusBadRequest, codeBadJSON, "unexpected data after the JSON object, before byte %d", dec.InputOffset())
	default:
		return jsonError(err)
	}
}

// jsonError says what is wrong with a body, naming the field or the byte offset.
func jsonError(err error) error {
	var tooBig *http.MaxBytesError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		return err
	case errors.As(err, &syntax):
		return errorf(http.StatusBadRequest, codeBadJSON, "malformed JSON at byte %d: %v", syntax.Offset, syntax)
	case errors.As(err, &typ) && typ.Field == "":
		return errorf(http.StatusBadRequest, codeBadJSON, "the body must be a JSON object, not %s", article(typ.Value))
	case errors.As(err, &typ):
		return errorf(http.StatusBadRequest, codeBadJSON, "field %q must be %s, not %s (byte %d)",
			typ.Field, jsonType(typ.Type), article(typ.Value), typ.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errorf(http.StatusBadRequest, codeBadJSON, "truncated JSON body")
	}
	// Unknown fields: encoding/json's message names the field.
	return errorf(http.StatusBadRequest, codeBadJSON, "%v", err)
}

func article(jsonValue string) string {
	switch jsonValue {
	case "array", "object":
		return "an " + jsonValue
	case "":
		return "this value"
	}
	return "a " + jsonValue
}

// jsonType names a Go type as the JSON a client must send.
func jsonType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(jsonType(t.Elem()), "a "), "an ") + "s"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return jsonType(t.Elem())
	}
	return "a " + t.String()
}

// payload is the data of a push: "data" as a UTF-8 string, or
// "data_base64" for bytes that are not text.
type payload struct {
	Data       *string `json:"data"`
	DataBase64 *string `json:"data_base64"`
	// Frame is the WebSocket frame type: "text", "binary" or "default"
	// (omitted: the connection's default, see api.FrameDefault).
	Frame string `json:"frame"`
}

// frame returns the payload's frame type.
func (p payload) frame() (api.Frame, error) {
	f, err := bus.ParseFrame(p.Frame)
	if err != nil {
		return api.FrameDefault, invalid("frame %q is none of text, binary, default", p.Frame)
	}
	return api.Frame(f), nil
}

// sender returns a with the payload's frame type.
func (p payload) sender(a *api.Client) api.Calls {
	f, _ := p.frame() // checked by bytes
	if f == api.FrameDefault {
		return a
	}
	return a.WithFrame(f)
}

// recoverable returns s, or its recoverable view when on is set.
func (payload) recoverable(s api.Calls, on bool) api.Calls {
	if on {
		return s.Recoverable()
	}
	return s
}

// bytes returns the payload; required says whether one must be given.
func (p payload) bytes(required bool) ([]byte, error) {
	if _, err := p.frame(); err != nil {
		return nil, err
	}
	switch {
	case p.Data != nil && p.DataBase64 != nil:
		return nil, invalid("give data or data_base64, not both")
	case p.Data != nil:
		return []byte(*p.Data), nil
	case p.DataBase64 != nil:
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if b, err := enc.DecodeString(*p.DataBase64); err == nil {
				return b, nil
			}
		}
		return nil, invalid("data_base64 is not base64")
	case required:
		return nil, invalid("data (a UTF-8 string) or data_base64 (bytes in base64) is required")
	}
	return nil, nil
}

// checkClientID refuses what is not a client id before anything is sent.
func checkClientID(field, id string) error {
	if id == "" {
		return invalid("%s is required", field)
	}
	if _, err := clientid.Gateway(id); err != nil {
		return invalid("%s %q is not a client id (<gateway>-<boot>-<seq>)", field, id)
	}
	return nil
}

// checkName refuses a group or uid that pkg/api would refuse, and one that
// is not UTF-8 (it could not come back intact in JSON lists).
func checkName(field, name string) error {
	switch {
	case name == "":
		return invalid("%s is required", field)
	case len(name) > api.MaxNameLen:
		return invalid("%s is %d bytes long, at most %d", field, len(name), api.MaxNameLen)
	case !utf8.ValidString(name):
		return invalid("%s is not UTF-8", field)
	}
	return nil
}

func pathClientID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	return id, checkClientID("client id", id)
}

func pathName(r *http.Request, param string) (string, error) {
	name := r.PathValue(param)
	return name, checkName(param, name)
}

// sessionFromJSON turns a decoded JSON session into the values pkg/api
// stores: integers become int64 (uint64 past MaxInt64), other numbers
// float64, so that Go and PHP workers read what was written.
func sessionFromJSON(s map[string]any) (map[string]any, error) {
	for k, v := range s {
		conv, err := fromJSON(v)
		if err != nil {
			return nil, invalid("session key %q: %v", k, err)
		}
		s[k] = conv
	}
	return s, nil
}

func fromJSON(v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i, nil
		}
		if u, err := strconv.ParseUint(x.String(), 10, 64); err == nil {
			return u, nil
		}
		f, err := x.Float64()
		if err != nil || math.IsInf(f, 0) {
			return nil, fmt.Errorf("number %s out of range", x)
		}
		return f, nil
	case []any:
		for i := range x {
			conv, err := fromJSON(x[i])
			if err != nil {
				return nil, err
			}
			x[i] = conv
		}
	case map[string]any:
		for k := range x {
			conv, err := fromJSON(x[k])
			if err != nil {
				return nil, err
			}
			x[k] = conv
		}
	}
	return v, nil
}
