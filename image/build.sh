#!/usr/bin/env bash
# image/build.sh [OUT_DIR]
# Builds the images the Dockerfile describes, without a Docker daemon: static musl release
# binaries of rmq-exporter and rmq-sidecar, each put alone on `scratch` with buildah (Debian's
# package; vfs storage under ~/.cache/rmq-rig/buildah, nothing runs in a container), user
# 65532:65532, tagged with the crate version (rmq-exporter:VERSION, rmq-sidecar:VERSION, the names
# deploy/ uses). Writes OCI archives OUT_DIR/rmq-exporter-VERSION.tar and rmq-sidecar-VERSION.tar
# (default OUT_DIR: ~/.cache/rmq-rig/images), loadable with `podman load`, `skopeo copy
# oci-archive:...`, or `docker load` after `skopeo copy ... docker-archive:...`. Prints KEY=VALUE
# lines: VERSION, EXPORTER_ARCHIVE, SIDECAR_ARCHIVE.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${RMQ_RIG_CACHE:-$HOME/.cache/rmq-rig}"
out="${1:-$cache/images}"
# Its own Cargo target directory: tests/run.sh runs this in the background beside `cargo test`,
# and one target directory would make them wait for each other's lock.
export CARGO_TARGET_DIR="${RMQ_IMAGE_TARGET_DIR:-$HOME/.cache/rmq-exporter/target-image}"
# Run from a test (tests/image.rs), cargo has set the test package's CARGO_MANIFEST_DIR and
# CARGO_PKG_*; ring's build script reruns when CARGO_MANIFEST_DIR changes, which rebuilt the whole
# release tree (about 2.5 min) on every run from a test and again on the next run from a shell.
for v in $(compgen -e | grep -E '^(CARGO_(MANIFEST_|PKG_|CRATE_|BIN_|PRIMARY_|TARGET_TMPDIR)|OUT_DIR$)' || true); do unset "$v"; done
target=x86_64-unknown-linux-musl
log() { echo "image/build.sh: $*" >&2; }

mkdir -p "$cache"
exec 9>"$cache/.image-build.lock"
flock 9

need=()
command -v buildah >/dev/null || need+=(buildah)
command -v musl-gcc >/dev/null || need+=(musl-tools)
if ((${#need[@]})); then
  [[ $(id -u) -eq 0 ]] || { log "missing ${need[*]}: apt-get install ${need[*]}"; exit 1; }
  log "installing ${need[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target" >&2

version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)"
[[ -n "$version" ]] || { log "no workspace version in Cargo.toml"; exit 1; }
log "building static $target release binaries ($version)"
(cd "$root" && CC_x86_64_unknown_linux_musl=musl-gcc cargo build -q --release --locked \
  --target "$target" -p rmq-exporter -p rmq-sidecar)

bh=(buildah --root "$cache/buildah/root" --runroot "$cache/buildah/run" --storage-driver vfs)
mkdir -p "$out"
for spec in "exporter:9877 9879" "sidecar:9878"; do
  what="${spec%%:*}" ports="${spec#*:}" name="rmq-${spec%%:*}"
  bin="$CARGO_TARGET_DIR/$target/release/$name"
  ctr="$("${bh[@]}" from --name "$name-build-$$" scratch)"
  "${bh[@]}" copy --chmod 0555 "$ctr" "$bin" "/$name" >/dev/null
  cfg=(--user 65532:65532 --entrypoint "[\"/$name\"]" --cmd ''
       --label "org.opencontainers.image.title=$name" --label "org.opencontainers.image.version=$version"
       --label "org.opencontainers.image.licenses=Apache-2.0")
  for p in $ports; do cfg+=(--port "$p/tcp"); done
  "${bh[@]}" config "${cfg[@]}" "$ctr"
  "${bh[@]}" commit -q --rm "$ctr" "localhost/$name:$version" >/dev/null
  rm -f "$out/$name-$version.tar"
  "${bh[@]}" push -q "localhost/$name:$version" "oci-archive:$out/$name-$version.tar:$name:$version" >/dev/null
  log "$name:$version -> $out/$name-$version.tar ($what)"
done
echo "VERSION=$version"
echo "EXPORTER_ARCHIVE=$out/rmq-exporter-$version.tar"
echo "SIDECAR_ARCHIVE=$out/rmq-sidecar-$version.tar"
