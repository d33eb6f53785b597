#!/usr/bin/env bash
# Builds the two images compose.yaml runs, FROM scratch, from static
# binaries built here: no registry is reached.
set -euo pipefail
cd "$(dirname "$0")/../.."
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$ctx/gatewayworker" ./cmd/gatewayworker
CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$ctx/nats-server" github.com/nats-io/nats-server/v2
docker build -q -t gatewayworker:local -f integration/compose/gatewayworker.Dockerfile "$ctx"
docker build -q -t gatewayworker-nats:local -f integration/compose/nats.Dockerfile "$ctx"
