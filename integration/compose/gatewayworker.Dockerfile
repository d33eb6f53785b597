# The gatewayworker image: one static binary (CGO_ENABLED=0), nothing else.
# Built by `go tool task images` (or the compose test) from a directory that
# holds the binary; no registry is needed.
FROM scratch
COPY gatewayworker /gatewayworker
ENTRYPOINT ["/gatewayworker"]
