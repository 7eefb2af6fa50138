# roamlab in a container: builds roamlab on Debian 12, then runs the demo (or any verb) in a
# privileged container, which it needs to make namespaces, links and routes of its own.
# The lab stays inside the container: it needs no network (--network none is enough).
#
#   docker build -t roamlab .
#   docker run --rm --privileged --network none roamlab            # the demo
#   docker run --rm --privileged --network none -v "$PWD/scenarios:/scenarios" \
#     roamlab run /scenarios/roaming.yaml --check                   # a scenario, in CI
#
# (podman takes the same commands.) Where no registry can be reached, BUILDER and BASE
# name local images instead: tests/container.rs makes a Debian 12 image from Debian's
# packages (debootstrap, then `podman import`) and gives the build stage the host's Rust
# toolchain (RUSTUP_HOME and CARGO_HOME mounted at /usr/local/rustup and /usr/local/cargo,
# where the rust image keeps them).
ARG BUILDER=rust:1-bookworm
ARG BASE=debian:12
# The cargo profile: release for use; the container test builds `dev`, minutes faster.
ARG PROFILE=release

FROM ${BUILDER} AS build
ARG PROFILE
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:$PATH
RUN command -v cc >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates; }
WORKDIR /src
COPY . .
# .cargo/config.toml builds for the host's tuple by name (to link statically): the binary is
# under target/<host tuple>/.
RUN cargo build --locked --profile "$PROFILE" \
    && install -m 755 "target/$(rustc -vV | sed -n 's/^host: //p')/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")/roamlab" \
       /usr/local/bin/roamlab

FROM ${BASE}
# What the demo and scenarios run inside the lab's nodes: dig, ping, traceroute, curl, and
# baresip for the call.
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      bind9-dnsutils iputils-ping traceroute curl baresip-core procps \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/roamlab /usr/local/bin/roamlab
ENTRYPOINT ["roamlab"]
CMD ["demo"]
