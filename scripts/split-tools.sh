#!/usr/bin/env bash
# Keeps the development tools (go-task) out of the module that users
# import: their ~120 modules (cloud SDKs, OpenTelemetry, gRPC) go into
# tools/go.mod, and go.work joins the two modules in this repository, so
# `go tool task ...` works as before. Programs that import
# github.com/gatewayworker/gatewayworker never read go.work: their module
# graph holds this module's own requirements only (docs/tools.md).
#
# Idempotent: after a merge that touched go.mod (a new dependency, or the
# tool directive back), run it again. Needs the module proxy or a module
# cache that holds the modules.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOWORK=off # each module tidied on its own
tool=github.com/go-task/task/v3/cmd/task

version=$(awk '$1 == "github.com/go-task/task/v3" {print $2}' go.mod)
if [ -z "$version" ] && [ -f tools/go.mod ]; then
  version=$(awk '$1 == "github.com/go-task/task/v3" {print $2}' tools/go.mod)
fi
: "${version:?no go-task version in go.mod or tools/go.mod}"
goline=$(awk '$1 == "go" {print $2; exit}' go.mod)

mkdir -p tools
if [ ! -f tools/go.mod ]; then
  cat >tools/go.mod <<EOF
// The development tools of gatewayworker, kept out of the module users
// import (docs/tools.md). go.work adds this module to the workspace, so
// \`go tool task ...\` runs at the repository's root.
module github.com/gatewayworker/gatewayworker/tools

go $goline
EOF
fi
(cd tools && go get -tool "$tool@$version" && go mod tidy)

go mod edit -droptool "$tool"
go mod tidy

cat >go.work <<EOF
// go.work makes \`go tool task ...\` work at the root: the tool is
// required by tools/go.mod, not by go.mod, so that programs importing
// gatewayworker do not get its modules in their graph (docs/tools.md).
// Go ignores go.work in modules that depend on this one.
go $goline

use (
	.
	./tools
)
EOF
unset GOWORK
rm -f go.work.sum
go list -m all >/dev/null
go build ./... && go tool task --list >/dev/null
echo "go.mod: $(grep -c '// indirect' go.mod) indirect requirements; tools/go.mod: $(grep -c '// indirect' tools/go.mod)"
