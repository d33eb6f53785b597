package bus_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// publicPackages are what users import (docs/public-api.md).
var publicPackages = []string{
	"bus", "gateway", "gateway/gatewaytest", "worker", "worker/workertest",
	"pkg/api", "pkg/httpapi", "pkg/protocol",
}

// TestPublicDocShowsNoWireEnvelope: `go doc -all` of every public package
// names no envelope of internal/bus (the exported structs with msgpack
// tags, read from its source, so a new one is covered) and no codec, so an
// envelope can change without breaking users.
func TestPublicDocShowsNoWireEnvelope(t *testing.T) {
	envelopes := envelopeNames(t, "../internal/bus")
	require.Contains(t, envelopes, "EventBatch", "the envelopes were read")
	for _, p := range publicPackages {
		out, err := exec.Command("go", "doc", "-all", "github.com/gatewayworker/gatewayworker/"+p).CombinedOutput()
		require.NoError(t, err, "%s", out)
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, `msgpack:"`) || strings.Contains(line, "func Marshal") {
				t.Errorf("go doc %s shows the codec: %q", p, line)
			}
			for _, name := range envelopes {
				if mentions(line, "bus."+name) || p == "bus" && strings.HasPrefix(line, "type "+name+" ") {
					t.Errorf("go doc %s shows envelope %s: %q", p, name, line)
				}
			}
		}
	}
}

// mentions reports whether line holds name as a whole identifier
// (bus.Event, not bus.EventKind).
func mentions(line, name string) bool {
	for i := 0; ; {
		j := strings.Index(line[i:], name)
		if j < 0 {
			return false
		}
		end := i + j + len(name)
		if end == len(line) || !isIdent(line[end]) {
			return true
		}
		i = end
	}
}

func isIdent(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// envelopeNames returns the exported structs with msgpack tags in dir.
func envelopeNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	fset := token.NewFileSet()
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.SkipObjectResolution)
		require.NoError(t, err)
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok || !ts.Name.IsExported() {
				return true
			}
			if st, ok := ts.Type.(*ast.StructType); ok {
				for _, fld := range st.Fields.List {
					if fld.Tag != nil && strings.Contains(fld.Tag.Value, `msgpack:"`) {
						names = append(names, ts.Name.Name)
						break
					}
				}
			}
			return true
		})
	}
	return names
}
