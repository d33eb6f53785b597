package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/require"
)

// repoRoot is the repository's top directory, seen from this package.
const repoRoot = "../.."

// TestConfigurationDocListsEveryFlag: the flag table of
// docs/configuration.md and the flag sets of the commands name the same
// flags, both ways. The table is the reference users read; the flag sets
// are what the binary takes; a flag added to one and not the other fails
// here.
func TestConfigurationDocListsEveryFlag(t *testing.T) {
	// The commands are the usage text's, so a new command is checked too.
	var commands []string
	for _, m := range regexp.MustCompile(`(?m)^  gatewayworker \[?([a-z]+)\]? `).FindAllStringSubmatch(usage, -1) {
		if m[1] != "version" {
			commands = append(commands, m[1])
		}
	}
	require.Contains(t, commands, "gateway")
	program := map[string][]string{} // flag → the commands that take it
	for _, cmd := range commands {
		var out bytes.Buffer
		err := dispatch(context.Background(), []string{cmd, "--help"}, &out, &out)
		require.True(t, errors.Is(err, flag.ErrHelp), "%s --help: %v", cmd, err)
		names := regexp.MustCompile(`(?m)^  --([a-z0-9-]+) `).FindAllStringSubmatch(out.String(), -1)
		require.NotEmpty(t, names, "%s --help lists no flags:\n%s", cmd, out.String())
		for _, m := range names {
			program[m[1]] = append(program[m[1]], cmd)
		}
	}

	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "configuration.md"))
	require.NoError(t, err)
	_, table, ok := strings.Cut(string(doc), "\n## The flags\n")
	require.True(t, ok, `docs/configuration.md has no "## The flags" section`)
	documented := map[string]bool{}
	for _, line := range strings.Split(table, "\n") {
		if !strings.HasPrefix(line, "| ") {
			continue
		}
		first, _, _ := strings.Cut(line[2:], " | ")
		for _, m := range regexp.MustCompile("`--([a-z0-9-]+)`").FindAllStringSubmatch(first, -1) {
			documented[m[1]] = true
		}
	}

	for _, name := range slices.Sorted(maps.Keys(program)) {
		if !documented[name] {
			t.Errorf("--%s (%s) is not in docs/configuration.md's flag table", name, strings.Join(program[name], ", "))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(documented)) {
		if program[name] == nil {
			t.Errorf("docs/configuration.md lists --%s, which no command takes", name)
		}
	}
}

// TestDocSizes holds the front documents to the sizes issue 16 set: the
// README points to docs/ for details, BENCHMARKS.md keeps the latest run
// (older runs are in git history).
func TestDocSizes(t *testing.T) {
	for file, limit := range map[string]int64{"README.md": 12 << 10, "BENCHMARKS.md": 8 << 10} {
		st, err := os.Stat(filepath.Join(repoRoot, file))
		require.NoError(t, err)
		if st.Size() > limit {
			t.Errorf("%s is %d bytes, over its %d: move details into docs/", file, st.Size(), limit)
		}
	}
}

// TestMarkdownLinksResolve: every relative link of every Markdown file of
// the repository names a file or directory that exists, and a link to a
// heading (#anchor) names one that the target has, by GitHub's rule for
// heading anchors. Links inside code are not links.
func TestMarkdownLinksResolve(t *testing.T) {
	var files []string
	require.NoError(t, filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != repoRoot && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules" || d.Name() == "vendor") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".md") {
			files = append(files, path)
		}
		return nil
	}))
	require.Contains(t, files, filepath.Join(repoRoot, "README.md"))

	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	checked := 0
	for _, file := range files {
		text, err := os.ReadFile(file)
		require.NoError(t, err)
		for _, m := range link.FindAllStringSubmatch(proseOf(string(text), false), -1) {
			target := m[1]
			if regexp.MustCompile(`^[a-z]+:`).MatchString(target) {
				continue // https:, mailto:: not ours to check offline
			}
			path, anchor, _ := strings.Cut(target, "#")
			resolved := file
			if path != "" {
				resolved = filepath.Join(filepath.Dir(file), path)
			}
			checked++
			if _, err := os.Stat(resolved); err != nil {
				t.Errorf("%s: link %s: %s does not exist", file, target, resolved)
				continue
			}
			if anchor == "" || !strings.HasSuffix(resolved, ".md") {
				continue
			}
			body, err := os.ReadFile(resolved)
			require.NoError(t, err)
			if !slices.Contains(headingAnchors(string(body)), anchor) {
				t.Errorf("%s: link %s: %s has no heading #%s (it has %v)", file, target, resolved, anchor, headingAnchors(string(body)))
			}
		}
	}
	require.Greater(t, checked, 20, "the link pattern found too few links")
}

// TestDocumentedCodeExists: every Go file or script that README.md,
// BENCHMARKS.md or docs/*.md names in code spans (`gateway/window.go`),
// from the repository's top, exists (names whose first directory is not
// one of the repository's, such as modules, are not paths): the documents point readers at the
// code that keeps each promise, and a moved file must move its mentions.
func TestDocumentedCodeExists(t *testing.T) {
	docs, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	require.NoError(t, err)
	path := regexp.MustCompile("`((?:[a-z0-9_-]+/)+[a-z0-9_.-]+\\.(?:go|sh))`")
	checked := 0
	for _, file := range append([]string{filepath.Join(repoRoot, "README.md"), filepath.Join(repoRoot, "BENCHMARKS.md")}, docs...) {
		text, err := os.ReadFile(file)
		require.NoError(t, err)
		for _, m := range path.FindAllStringSubmatch(string(text), -1) {
			top, _, _ := strings.Cut(m[1], "/")
			if st, err := os.Stat(filepath.Join(repoRoot, top)); err != nil || !st.IsDir() {
				continue // not ours: a module such as `nats-io/nats.go`
			}
			checked++
			if _, err := os.Stat(filepath.Join(repoRoot, m[1])); err != nil {
				t.Errorf("%s names %s, which does not exist", file, m[1])
			}
		}
	}
	require.Greater(t, checked, 10, "the path pattern found too few paths")
}

// proseOf is a Markdown text without its fenced code blocks (a shell
// comment in a block is not a heading) and, unless keepSpans, without its
// inline code spans (a `[a](b)` in code is not a link; `status` in a
// heading is part of its anchor).
func proseOf(text string, keepSpans bool) string {
	var b strings.Builder
	inFence := false
	span := regexp.MustCompile("`[^`]*`")
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		if !keepSpans {
			line = span.ReplaceAllString(line, "``")
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// headingAnchors are the anchors GitHub gives a document's headings:
// lower case, spaces to hyphens, punctuation other than - and _ dropped,
// and -1, -2, ... for repeats.
func headingAnchors(text string) []string {
	var anchors []string
	seen := map[string]int{}
	for _, line := range strings.Split(proseOf(text, true), "\n") {
		title, ok := strings.CutPrefix(line, "#")
		if !ok {
			continue
		}
		title = strings.TrimLeft(title, "#")
		if !strings.HasPrefix(title, " ") {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(title)) {
			switch {
			case r == ' ':
				b.WriteByte('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r):
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			a += "-" + strconv.Itoa(n)
		}
		seen[b.String()]++
		anchors = append(anchors, a)
	}
	return anchors
}
