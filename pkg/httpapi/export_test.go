package httpapi

// RoutePatterns lists the patterns the handler serves, for the test that
// keeps openapi.json true.
func RoutePatterns() []string {
	var out []string
	for _, rt := range routes() {
		out = append(out, rt.pattern)
	}
	return append(out, "POST /v1/batch", "GET "+OpenAPIPath)
}
