# The order-status consumer's image, for a machine that reaches a container registry:
#   docker build -t orderstatus .      (or: podman build -t orderstatus .)
# Without a registry, `make image` assembles the same final stage from the host's Go build
# (deploy/image/Containerfile). Keep the two final stages alike.

# Build stage: a static binary (no cgo, so it runs on scratch).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/consumer ./cmd/consumer

# Final stage: the binary and the CA certificates (TLS to the providers and to NATS), nothing else.
FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/consumer /consumer
USER 65532:65532
# /healthz, /readyz and /metrics: set http.listen to 0.0.0.0:8080 in the image's config.
EXPOSE 8080
ENTRYPOINT ["/consumer"]
