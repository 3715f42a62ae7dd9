# syntax=docker/dockerfile:1
#
# Images for tokenhandler and its demo stack (docker-compose.yml):
#
#   docker build -t tokenhandler .                          # the product (last stage)
#   docker build --target example-api -t tokenhandler-example-api .
#   docker build --target dex -t tokenhandler-dex .
#
# Every binary is static (CGO_ENABLED=0) and runs as a non-root user on distroless.
# CI runs the tokenhandler build command below outside Docker and checks the binary is
# static: examples/check-docker-build.sh.

ARG GO_IMAGE=golang:1.26
ARG RUN_IMAGE=gcr.io/distroless/static-debian12:nonroot

# --- tokenhandler and the example API -------------------------------------------------
FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# Keep this command in step with examples/check-docker-build.sh.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/tokenhandler ./cmd/tokenhandler
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/example-api ./examples/api/cmd/example-api

# --- Dex, from the same tool module the tests build (e2e/idp/dex) ----------------------
# The same command as scripts/idp-bin.sh dex, with CGO_ENABLED=0 for a static binary
# (that leaves out only Dex's sqlite storage; the demo uses storage: memory).
# A cold build takes about 5 minutes on 2 cores.
FROM ${GO_IMAGE} AS dex-build
WORKDIR /src/e2e/idp/dex
COPY e2e/idp/dex/go.mod e2e/idp/dex/go.sum ./
RUN GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/dex github.com/dexidp/dex/cmd/dex

FROM ${RUN_IMAGE} AS dex
COPY --from=dex-build /out/dex /usr/local/bin/dex
COPY examples/dex/dex.yaml /etc/dex/config.yaml
# end_session_endpoint (sign-out) and back-channel logout
ENV DEX_SESSIONS_ENABLED=true
USER nonroot:nonroot
EXPOSE 5556
ENTRYPOINT ["/usr/local/bin/dex"]
CMD ["serve", "/etc/dex/config.yaml"]

FROM ${RUN_IMAGE} AS example-api
COPY --from=build /out/example-api /usr/local/bin/example-api
USER nonroot:nonroot
ENV EXAMPLE_API_LISTEN=:9000
EXPOSE 9000
ENTRYPOINT ["/usr/local/bin/example-api"]

# --- tokenhandler: the default image ------------------------------------------------------
FROM ${RUN_IMAGE} AS tokenhandler
COPY --from=build /out/tokenhandler /usr/local/bin/tokenhandler
USER nonroot:nonroot
# Listen on every interface inside the container; the admin listener (/healthz,
# /readyz, /metrics) too, so a probe or Prometheus can reach it. Publish it only on a
# private network.
ENV TH_LISTEN=:8080 \
    TH_ADMIN_LISTEN=:9090
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/tokenhandler"]
CMD ["serve"]
