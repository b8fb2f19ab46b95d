# Multi-stage: build a static binary, ship it alone on a minimal base.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=${VERSION}" \
      -o /out/redwire ./cmd/redwire \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/redwire /usr/local/bin/redwire
# The buffer must survive container restarts: mount a volume here.
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
WORKDIR /data
EXPOSE 9187
VOLUME /data
ENTRYPOINT ["/usr/local/bin/redwire"]
CMD ["--buffer.path=/data"]
