package httpapi_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/pkg/httpapi"
)

// The example values of openapi.json, replaced by live ones in the test.
const (
	docClientID = "gw1-mihyrchs-1"
	docGroup    = "room-1"
	docUID      = "user-42"
)

type openAPIDoc struct {
	OpenAPI    string                                 `json:"openapi"`
	Paths      map[string]map[string]openAPIOperation `json:"paths"`
	Components struct {
		Schemas    map[string]openAPISchema    `json:"schemas"`
		Parameters map[string]openAPIParameter `json:"parameters"`
	} `json:"components"`
}

type openAPIOperation struct {
	OperationID string             `json:"operationId"`
	Parameters  []openAPIParameter `json:"parameters"`
	RequestBody *struct {
		Content map[string]struct {
			Example json.RawMessage `json:"example"`
		} `json:"content"`
	} `json:"requestBody"`
	Responses map[string]struct {
		Ref     string `json:"$ref"`
		Content map[string]struct {
			Schema openAPISchema `json:"schema"`
		} `json:"content"`
	} `json:"responses"`
	Security *[]any `json:"security"`
}

type openAPIParameter struct {
	Ref     string `json:"$ref"`
	Name    string `json:"name"`
	In      string `json:"in"`
	Example string `json:"example"`
}

type openAPISchema struct {
	Ref      string   `json:"$ref"`
	Required []string `json:"required"`
}

// TestOpenAPIDocumentIsTrue walks every path and method of the served
// OpenAPI document and calls it on a real stack with the document's own
// examples: each must be routed and answer its documented success status
// with the documented required fields. And every route the handler serves
// must be in the document.
func TestOpenAPIDocumentIsTrue(t *testing.T) {
	s := newStack(t, stackConfig{})
	doc := readOpenAPI(t, s)
	require.Equal(t, "3.1.0", doc.OpenAPI)

	var documented []string
	opIDs := map[string]bool{}
	for path, methods := range doc.Paths {
		for method, op := range methods {
			documented = append(documented, strings.ToUpper(method)+" "+path)
			require.False(t, opIDs[op.OperationID], "operationId %q twice", op.OperationID)
			opIDs[op.OperationID] = true
		}
	}
	require.ElementsMatch(t, httpapi.RoutePatterns(), documented, "routes served and routes documented differ")
	slices.Sort(documented)

	for _, route := range documented {
		method, path, _ := strings.Cut(route, " ")
		op := doc.Paths[path][strings.ToLower(method)]
		t.Run(route, func(t *testing.T) {
			// A fresh client per call, bound and joined, as the examples expect.
			_, id := s.dial()
			require.NoError(t, s.api.BindUID(t.Context(), id, docUID))
			require.NoError(t, s.api.JoinGroup(t.Context(), id, docGroup))

			target := docTarget(t, doc, path, op, id)

			var success []string
			for code, resp := range op.Responses {
				if code[0] == '2' {
					success = append(success, code)
				}
				if route != "GET "+httpapi.OpenAPIPath && code == "401" {
					require.Equal(t, "#/components/responses/Unauthorized", resp.Ref)
				}
			}
			require.Len(t, success, 1, "one documented success status")
			if route == "GET "+httpapi.OpenAPIPath {
				require.NotNil(t, op.Security, "the document is public")
				require.Empty(t, *op.Security)
				return // fetched above without a key
			}
			require.Contains(t, op.Responses, "401")

			status, answer := s.call(method, target, docBody(t, op, id))
			require.NotEqual(t, http.StatusNotFound, status, "%v", answer)
			require.NotEqual(t, http.StatusMethodNotAllowed, status, "%v", answer)
			require.Equal(t, success[0], strconv.Itoa(status), "%v", answer)

			schema := op.Responses[success[0]].Content["application/json"].Schema
			if schema.Ref != "" {
				schema = doc.Components.Schemas[strings.TrimPrefix(schema.Ref, "#/components/schemas/")]
			}
			for _, field := range schema.Required {
				require.Contains(t, answer, field, "documented required field")
			}
		})
	}
}

// readOpenAPI returns the document the handler serves.
func readOpenAPI(t *testing.T, s *stack) openAPIDoc {
	t.Helper()
	status, _, raw := s.raw("GET", httpapi.OpenAPIPath, nil, nil)
	require.Equal(t, 200, status)
	var doc openAPIDoc
	require.NoError(t, json.Unmarshal(raw, &doc))
	return doc
}

// docTarget is the URL path and query of a documented operation with its
// examples, for client id.
func docTarget(t *testing.T, doc openAPIDoc, path string, op openAPIOperation, id string) string {
	t.Helper()
	target := path
	var query []string
	for _, p := range op.Parameters {
		if p.Ref != "" {
			p = doc.Components.Parameters[strings.TrimPrefix(p.Ref, "#/components/parameters/")]
		}
		switch {
		case p.In == "path" && p.Name == "id":
			require.Equal(t, docClientID, p.Example)
			target = strings.ReplaceAll(target, "{id}", id)
		case p.In == "path":
			require.NotEmpty(t, p.Example, p.Name)
			target = strings.ReplaceAll(target, "{"+p.Name+"}", p.Example)
		case p.In == "query" && p.Example != "":
			query = append(query, p.Name+"="+p.Example)
		}
	}
	require.NotContains(t, target, "{", "a path parameter is not documented")
	if len(query) > 0 {
		target += "?" + strings.Join(query, "&")
	}
	return target
}

// docBody is the documented request body example for client id, or nil.
func docBody(t *testing.T, op openAPIOperation, id string) any {
	t.Helper()
	if op.RequestBody == nil {
		return nil
	}
	example := op.RequestBody.Content["application/json"].Example
	require.NotEmpty(t, example, "a request body example")
	return strings.ReplaceAll(string(example), docClientID, id)
}
