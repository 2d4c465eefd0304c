# The order-status consumer's image, for a machine that reaches a container registry:
#   docker build -t orderstatus \
#     --build-arg VERSION=$(git describe --tags --match 'v*' --dirty 2>/dev/null || git describe --always --dirty) \
#     --build-arg REVISION=$(git rev-parse HEAD) --build-arg CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ) .
# (or podman build; docker buildx build --platform linux/amd64,linux/arm64 … for several
# platforms: the build stage runs on the builder's platform and cross-compiles). .git is not in
# the build context, so the version and revision come only from these arguments; without them
# `consumer version` says "(devel)". Without a registry, `make image` assembles the same final
# stage from the host's Go build (deploy/image/Containerfile). Keep the two final stages alike.

# Build stage: a static binary (no cgo, so it runs on scratch), built on the builder's own
# platform for the target's (TARGETOS/TARGETARCH, set by BuildKit and buildah per --platform).
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS TARGETARCH
ARG VERSION REVISION
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
      -ldflags="-s -w -X github.com/paystatus/orderstatus/internal/buildinfo.version=${VERSION} -X github.com/paystatus/orderstatus/internal/buildinfo.revision=${REVISION}" \
      -o /out/consumer ./cmd/consumer

# Final stage: the binary and the CA certificates (TLS to the providers and to NATS), nothing else.
FROM scratch
ARG VERSION REVISION CREATED
# OCI annotations (the project names no licence, so there is no licenses label).
LABEL org.opencontainers.image.title="orderstatus" \
      org.opencontainers.image.description="Order-status consumer: Kuaishou and Kudian payment status over NATS JetStream" \
      org.opencontainers.image.source="https://github.com/paystatus/orderstatus" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/consumer /consumer
USER 65532:65532
# /healthz, /readyz and /metrics: set http.listen to 0.0.0.0:8080 in the image's config.
EXPOSE 8080
ENTRYPOINT ["/consumer"]
