# Multi-stage build: a static binary on a distroless, non-root base.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/bot ./cmd/bot

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bot /bot
COPY config.yaml /etc/arkbot/config.yaml
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/bot", "-config", "/etc/arkbot/config.yaml"]
