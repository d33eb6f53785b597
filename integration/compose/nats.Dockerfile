# nats-server built from the version go.mod pins, plus gatewayworker for the
# healthcheck (a scratch image has no shell).
FROM scratch
COPY nats-server /nats-server
COPY gatewayworker /gatewayworker
ENTRYPOINT ["/nats-server"]
