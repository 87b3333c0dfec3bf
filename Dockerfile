# A static trackd in an image with nothing else in it.
#
#   docker build -t trackd .
#   docker run --rm -p 6969:6969/tcp -p 6969:6969/udp trackd
#
# Mount a config file and a state directory to keep swarms across restarts:
#   docker run -v /etc/trackd:/etc/trackd:ro -v trackd-state:/var/lib/trackd ... \
#     trackd -config /etc/trackd/trackd.toml -state /var/lib/trackd/state.snap
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X trackd/server.Version=${VERSION}" -o /trackd ./cmd/trackd

FROM scratch
COPY --from=build /trackd /trackd
# the admin listener (metrics, stats page) listens on loopback by default;
# inside a container publish it with -admin :6970 and -p 6970:6970
EXPOSE 6969/tcp 6969/udp
USER 65534:65534
ENTRYPOINT ["/trackd"]
CMD ["-http", ":6969", "-udp", ":6969"]
