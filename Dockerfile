# loadcap image: a static binary on distroless, non-root.
#
#   docker build -t loadcap --build-arg VERSION=$(git describe --tags --always) .
#   docker run --rm loadcap run --targets http://db:8086 --rate 1k --out ""
#
# The default image (last stage) runs as uid 65532 with no capabilities:
# that is all `loadcap run`, `merge`, `compare`, `report`, `sink` and the
# socket sampler need (sock_diag dumps of the own network namespace are not
# privileged). It is what deploy/kubernetes runs.
#
# Lab mode (`loadcap run --lab`, `--find-limit`) is different: it creates
# network namespaces (CAP_SYS_ADMIN: unshare/setns and the /run/netns bind
# mounts), veth pairs and addresses and writes the namespace's sysctls
# (CAP_NET_ADMIN), and runs iproute2's `ip`. Build the `lab` target for it
# and run it as root with those capabilities, never as the default image:
#   docker build --target lab -t loadcap:lab .
#   docker run --rm --cap-add NET_ADMIN --cap-add SYS_ADMIN \
#     --security-opt apparmor=unconfined loadcap:lab run --lab --lab-ports 200
# The host is not touched either way: the lab's sysctls are written inside
# its own namespaces.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/loadcap ./cmd/loadcap

# lab: root, iproute2, for --lab only (needs NET_ADMIN and SYS_ADMIN).
FROM debian:12-slim AS lab
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/loadcap /usr/local/bin/loadcap
WORKDIR /work
ENTRYPOINT ["/usr/local/bin/loadcap"]
CMD ["--help"]

# default: distroless static, non-root (uid/gid 65532), no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/loadcap /usr/local/bin/loadcap
USER 65532:65532
WORKDIR /home/nonroot
ENTRYPOINT ["/usr/local/bin/loadcap"]
CMD ["--help"]
