# registry-auth container image: a static binary on scratch, non-root.
#
# From source (pulls golang):
#   docker build --build-arg VERSION=v1.0.0 -t registry-auth:local .
#
# From a binary built outside Docker (pulls nothing; the classic builder builds
# every stage before --target, so `runtime` comes first and has no binary):
#   CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=v1.0.0" -o registry-auth .
#   docker build --target runtime -t registry-auth:runtime .
#   printf 'FROM registry-auth:runtime\nCOPY registry-auth /registry-auth\n' |
#       docker build -f - -t registry-auth:local .
#
# The image runs as uid 65532 with a read-only root file system; it only reads
# /auth/htpasswd and /auth/groups (mount the directory read-only).

ARG GO_VERSION=1.26.8

# runtime: everything the final image has except the binary.
FROM scratch AS runtime
# Numeric, so runAsNonRoot checks work without an /etc/passwd.
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/registry-auth", "healthcheck"]
ENTRYPOINT ["/registry-auth"]
CMD ["serve"]

FROM golang:${GO_VERSION}-alpine AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
    -o /out/registry-auth .

FROM runtime
COPY --from=build /out/registry-auth /registry-auth
