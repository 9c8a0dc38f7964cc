#!/usr/bin/env bash
# Builds the meshrelay image without a daemon and without pulling a base image: buildah from
# scratch, with the Node binary this project was built with and the C libraries it links, and the
# same tree the Dockerfile's runtime stage holds (package.json, production node_modules, dist/src,
# dist/bench, proto), running as 65532. For machines that cannot reach a registry (the Dockerfile's
# base images come from Docker Hub and gcr.io). Needs root and buildah; run `npm run build` first.
#   scripts/build-image.sh [image name]   (default localhost/meshrelay:<package version>)
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(node -p 'require("./package.json").version')
image=${1:-localhost/meshrelay:$version}
buildah() { command buildah --storage-driver vfs "$@"; }

[ -f dist/src/cli/main.js ] || { echo "image: dist/ is missing: run npm run build first" >&2; exit 1; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp package.json package-lock.json "$stage/"
mkdir -p "$stage/dist"
cp -r dist/src dist/bench "$stage/dist/"
cp -r proto "$stage/"
(cd "$stage" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund >/dev/null)

container=$(buildah from scratch)
root=$(buildah mount "$container")
node_binary=$(readlink -f "$(command -v node)")
mkdir -p "$root/usr/bin" "$root/etc" "$root/tmp" "$root/app" "$root/var/lib/meshrelay"
chmod 1777 "$root/tmp"
cp "$node_binary" "$root/usr/bin/node"
for library in $(ldd "$node_binary" | grep -o '/[^ ]*\.so[^ ]*'); do
  mkdir -p "$root$(dirname "$library")"
  cp -L "$library" "$root$library"
done
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$root/etc/group"
cp -r "$stage/." "$root/app/"
chown -R 65532:65532 "$root/var/lib/meshrelay"
buildah unmount "$container" >/dev/null
# As the Dockerfile: freed blocks of 1 MiB and more go back to the system (src/limits/memory-reclaimer.ts).
buildah config --user 65532:65532 --workingdir /app --port 15012 --port 15014 --env MALLOC_MMAP_THRESHOLD_=1048576 \
  --entrypoint '["/usr/bin/node", "/app/dist/src/cli/main.js"]' --cmd 'serve --config /etc/meshrelay/config.yaml' "$container"
buildah commit --rm "$container" "$image" >/dev/null
echo "image: built $image ($(buildah images --format '{{.Size}}' "$image"))"
