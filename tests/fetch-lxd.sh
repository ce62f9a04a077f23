#!/bin/sh
# Extracts Debian 12's LXD 5.0.2 daemon and what it needs into a private tree (default
# /var/cache/silo/lxd-5.0.2) for tests/src/lxd.rs, without installing it: no service starts,
# nothing else on the machine changes.
set -eu
dest=${1:-/var/cache/silo/lxd-5.0.2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
pkgs="lxd libuv1 libraft2 libdqlite0 liblxc1 liblxc-common rsync libpopt0 attr"
# shellcheck disable=SC2086
apt-get download $pkgs || { apt-get update -qq && apt-get download $pkgs; }
mkdir -p "$dest"
for d in ./*.deb; do dpkg-deb -x "$d" "$dest"; done
"$dest/usr/bin/lxd" --version 2>/dev/null || LD_LIBRARY_PATH="$dest/usr/lib/x86_64-linux-gnu" "$dest/usr/bin/lxd" --version
