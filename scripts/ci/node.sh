#!/usr/bin/env bash
# Prints the bin directory of Node VERSION for this machine, fetching it once
# from the npm registry (the package node-linux-<arch>@VERSION, whose bin/node
# runs as it is) into a cache outside the tree:
#
#   scripts/ci/node.sh VERSION      # 22, 24.22, 26.12.0, ...
#
# VMPK_NODE_ARCH=arm64 fetches another architecture's build (not run here).
# Cache: $VMPK_NODE_CACHE, default ~/.cache/vmpk-node/<arch>-<exact version>/.
# A major or minor version resolves to the newest release the registry has
# (one `npm view`); an exact version found in the cache needs no network.
# The guest mounts the host's / read-only, so the path printed works there too.
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: scripts/ci/node.sh VERSION" >&2; exit 2; }
want=$1
case $(uname -m) in
  x86_64) arch=x64 ;;
  aarch64) arch=arm64 ;;
  *) echo "node.sh: no node-linux-* package for $(uname -m)" >&2; exit 2 ;;
esac
arch=${VMPK_NODE_ARCH:-$arch}
cache=${VMPK_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmpk-node}
pkg=node-linux-$arch

if [[ $want =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  version=$want
else
  # npm view lists every release in the range, in no useful order: sort them.
  version=$(npm view "$pkg@$want" version --json 2>/dev/null | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const v = JSON.parse(s || "null"); const list = Array.isArray(v) ? v : v ? [v] : [];
      for (const x of list) console.log(x); });' | sort -V | tail -n1) || true
  # Offline: the newest cached release of that line.
  if [[ -z $version ]]; then
    version=$(ls -d "$cache/$arch-$want".* 2>/dev/null | sed "s|.*/$arch-||" | sort -V | tail -n1)
  fi
  [[ -n $version ]] || { echo "node.sh: no $pkg release matches '$want' (and none is cached)" >&2; exit 1; }
fi

dir=$cache/$arch-$version
if [[ ! -x $dir/bin/node ]]; then
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "node.sh: fetching $pkg@$version into $dir" >&2
  (cd "$tmp" && npm pack --silent "$pkg@$version" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  # bin/node only: npm and npx come from the host (they are plain JS).
  mkdir -p "$tmp/out/bin"
  mv "$tmp/package/bin/node" "$tmp/out/bin/node"
  # A binary for another architecture (VMPK_NODE_ARCH=arm64 on x86-64) runs
  # under qemu-user; scripts/arm64/run.sh does that.
  [[ -n ${VMPK_NODE_ARCH:-} ]] || "$tmp/out/bin/node" --version >/dev/null
  rm -rf "$dir" && mv "$tmp/out" "$dir"
fi
echo "$dir/bin"
