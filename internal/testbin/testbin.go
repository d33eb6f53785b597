// Package testbin builds main packages for tests that need a process (its
// exit code, its stderr, a signal): once per content of the module, into a
// directory shared by every test binary and every run. `go test ./...`
// runs packages in parallel, and two of them (cmd/gatewayworker and
// integration) each built and linked the same gatewayworker binary on
// every run; now the first one builds it and the others find it.
package testbin

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	mu    sync.Mutex
	paths = map[string]*build{}
)

type build struct {
	once sync.Once
	path string
	err  error
}

// Build returns the path of the binary of main package pkg (an import
// path: "github.com/gatewayworker/gatewayworker/cmd/gatewayworker", or a
// dependency's, "github.com/nats-io/nats-server/v2", at the version go.mod
// pins), building it unless a binary of the same sources is there already.
//
// The binaries live in the user's cache directory (os.UserCacheDir, e.g.
// ~/.cache; os.TempDir only without one), gatewayworker-testbin/KEY/, so
// that no other local user can put a binary there for tests to run; KEY
// hashes the module's Go files, go.mod, go.sum, go.work and the Go version. Reading
// those files also tells go test's cache that a test depends on them, so a
// change reruns it rather than replaying its cached result.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	mu.Lock()
	b := paths[pkg]
	if b == nil {
		b = &build{}
		paths[pkg] = b
	}
	mu.Unlock()
	b.once.Do(func() { b.path, b.err = buildOnce(pkg) })
	if b.err != nil {
		t.Fatalf("testbin: %v", b.err)
	}
	return b.path
}

func buildOnce(pkg string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	key, err := sourceKey(root)
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	base := filepath.Join(cache, "gatewayworker-testbin")
	dir := filepath.Join(base, key)
	path := filepath.Join(dir, binaryName(pkg))
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	forgetOld(base, key)
	// Build beside the final name and rename: another test binary may
	// build the same one at the same time, and must never run half a file.
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
	}
	return path, os.Rename(tmp, path)
}

// binaryName is what go build names pkg's binary: its last element, or the
// one before a major version ("nats-server" for .../nats-server/v2).
func binaryName(pkg string) string {
	name := path.Base(pkg)
	if len(name) > 1 && name[0] == 'v' && strings.Trim(name[1:], "0123456789") == "" {
		name = path.Base(path.Dir(pkg))
	}
	return name
}

// moduleRoot is the directory of the go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// moduleFiles choose the versions of what is built: the workspace's
// (go.work) and each module's.
var moduleFiles = map[string]bool{"go.mod": true, "go.sum": true, "go.work": true, "go.work.sum": true}

// sourceKey hashes what a build of the module depends on.
func sourceKey(root string) (string, error) {
	h := sha256.New()
	fmt.Fprintln(h, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "vendor" || d.Name() == "node_modules"):
			return filepath.SkipDir
		case d.IsDir() || !(strings.HasSuffix(path, ".go") || moduleFiles[d.Name()]):
			return nil
		case strings.HasSuffix(path, "_test.go"):
			return nil // not in any binary
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		fmt.Fprintln(h, strings.TrimPrefix(path, root))
		_, err = io.Copy(h, f)
		return err
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// forgetOld removes the binaries of other sources a day after they were
// built: each is tens of megabytes.
func forgetOld(base, keep string) {
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		if info, err := e.Info(); err == nil && e.Name() != keep && time.Since(info.ModTime()) > 24*time.Hour {
			_ = os.RemoveAll(filepath.Join(base, e.Name()))
		}
	}
}
