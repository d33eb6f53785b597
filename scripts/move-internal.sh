#!/usr/bin/env bash
# Issue 16 item 4: the wire protocol leaves the public API. Moves
#   bus/          -> internal/bus/       (envelopes, codec, subjects, the NATS connection)
#   pkg/ratelog/  -> internal/ratelog/
#   pkg/clientid/ -> internal/clientid/
# rewrites every import of them (the examples, which show users' code,
# keep importing github.com/gatewayworker/gatewayworker/bus), every
# path to them in Go comments, Markdown, Taskfile.yml and .ci/run, and
# writes the public bus package again as aliases of what users need
# (scripts/move-internal/bus.go.txt): Connect, Config, Conn,
# StartEmbedded, Subjects, roles, defaults and errors. What users import
# is listed in docs/public-api.md.
#
# Run it at the repository's root on a tree where bus/ is still public,
# after merging the other branches, then commit:
#   bash scripts/move-internal.sh && git commit -qam "move the wire protocol under internal/ (scripts/move-internal.sh)"
set -euo pipefail
cd "$(dirname "$0")/.."
M=github.com/gatewayworker/gatewayworker
T=scripts/move-internal

if [ -e internal/bus ] || [ ! -f bus/envelope.go ]; then
  echo "move-internal: bus/ is moved already (internal/bus exists, or bus/envelope.go does not)" >&2
  exit 1
fi

git mv bus internal/bus
git mv pkg/ratelog internal/ratelog
git mv pkg/clientid internal/clientid

# Test files that read the docs are one directory deeper now.
sed -i 's#"\.\./docs/#"../../docs/#g' internal/bus/*_test.go

# Imports. Every package imports the internal ones; the examples keep the
# public bus (the aliases written below).
git ls-files -z '*.go' | while IFS= read -r -d '' f; do
  sed -i \
    -e "s#\"$M/bus/bustest\"#\"$M/internal/bus/bustest\"#g" \
    -e "s#\"$M/pkg/ratelog\"#\"$M/internal/ratelog\"#g" \
    -e "s#\"$M/pkg/clientid\"#\"$M/internal/clientid\"#g" \
    "$f"
  case "$f" in
  examples/*) ;;
  *) sed -i -e "s#\"$M/bus\"#\"$M/internal/bus\"#g" "$f" ;;
  esac
done

# Paths in comments and documents: bus/x.go, bus/bustest, bus/testdata,
# ./bus (a package argument; ./bus/... becomes ./internal/..., so that
# every internal package stays in .ci/run's race run), pkg/ratelog,
# pkg/clientid.
git ls-files -z '*.go' '*.md' '*.yml' '.ci/run' | while IFS= read -r -d '' f; do
  sed -i -E \
    -e 's#(^|[^A-Za-z0-9_./-])bus/([A-Za-z0-9_]+\.go|bustest|testdata)#\1internal/bus/\2#g' \
    -e 's#(^|[ "(])\./bus/([A-Za-z0-9_]+\.go|bustest|testdata)#\1./internal/bus/\2#g' \
    -e 's#(^|[ "(])\./bus/\.\.\.([ "),;]|$)#\1./internal/...\2#g' \
    -e 's#(^|[ "(])\./bus/?([ "),;]|$)#\1./internal/bus\2#g' \
    -e 's#(^|[^A-Za-z0-9_-])pkg/(ratelog|clientid)#\1internal/\2#g' \
    "$f"
done

# docs/architecture.md names package bus for what is internal/bus now,
# and its package table gains the public bus (no-ops if the text changed).
if [ -f docs/architecture.md ]; then
  sed -i -E \
    -e 's#package `bus`#package `internal/bus`#g' \
    -e 's#→ `bus`\.#→ `internal/bus`.#' \
    -e 's#envelopes of `bus`#envelopes of `internal/bus`#' \
    -e 's#^\| `bus` \| NATS wiring#| `internal/bus` | NATS wiring#' \
    -e '/^\| `internal\/bus` \| NATS wiring/a | `bus` | what programs need of it, as aliases: `Connect`, `Config`, `StartEmbedded`, `Subjects`, roles ([public-api.md](public-api.md)) |' \
    docs/architecture.md
fi

# The public bus: aliases of what users need, and the test that go doc of
# the public packages shows no envelope.
mkdir -p bus
cp "$T/bus.go.txt" bus/bus.go
cp "$T/doc_test.go.txt" bus/doc_test.go
git add bus internal

gofmt -w $(git ls-files '*.go')
test -z "$(gofmt -l $(git ls-files '*.go'))"
go build ./...
go vet ./...
echo "move-internal: done; review with git status, then commit"
