# Two images from one build: `docker build --target exporter -t rmq-exporter:0.1.0 .` and
# `docker build --target sidecar -t rmq-sidecar:0.1.0 .` (the names and tags deploy/ uses).
# Static musl binaries on `scratch`: nothing but the binary, run as 65532:65532 (non-root), fine
# with a read-only root filesystem (neither binary writes files). TLS roots are compiled in
# (rustls + webpki-roots), and musl resolves DNS without NSS libraries.
# Without a Docker daemon, image/build.sh builds the same two images with buildah.

FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl -p rmq-exporter -p rmq-sidecar

FROM scratch AS exporter
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/rmq-exporter /rmq-exporter
USER 65532:65532
# /metrics, KEDA external scaler (gRPC, with --keda-listen)
EXPOSE 9877 9879
ENTRYPOINT ["/rmq-exporter"]

FROM scratch AS sidecar
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/rmq-sidecar /rmq-sidecar
USER 65532:65532
EXPOSE 9878
ENTRYPOINT ["/rmq-sidecar"]
