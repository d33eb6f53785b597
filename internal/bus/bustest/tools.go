package bustest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Missing ends t because a program it needs is absent: msg says which and
// how to install it. It skips t, except under CI=true, where .ci/run
// installs every such program, so an absent one fails t instead.
func Missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// Tool returns the path of the first of names on $PATH, or ends t through
// Missing, naming install, the command that provides it.
func Tool(t testing.TB, install string, names ...string) string {
	t.Helper()
	for _, name := range names {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	Missing(t, names[0]+" is not installed: "+install)
	return ""
}

// PHP returns php with the extensions exts loaded, or ends t through
// Missing with the Debian packages that provide them.
func PHP(t testing.TB, exts ...string) string {
	t.Helper()
	const install = "apt-get install -y php-cli php-msgpack"
	bin := Tool(t, install, "php")
	check := "foreach ($argv as $i => $e) if ($i && !extension_loaded($e)) exit(1);"
	if err := exec.Command(bin, append([]string{"-r", check, "--"}, exts...)...).Run(); err != nil {
		Missing(t, "php lacks one of the extensions "+strings.Join(exts, ", ")+": "+install)
	}
	return bin
}
