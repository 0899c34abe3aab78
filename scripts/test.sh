#!/usr/bin/env bash
# The whole ndmpd test suite, as README.md gives it: installs the Debian packages the tests
# use (real peers and oracles) when they are missing, then runs every test target.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v rpcgen >/dev/null || need+=(rpcsvc-proto)
[ -f /usr/include/tirpc/rpc/rpc.h ] || need+=(libtirpc-dev)
command -v gcc >/dev/null || need+=(gcc)
command -v tshark >/dev/null || need+=(tshark)
command -v tcpdump >/dev/null || need+=(tcpdump)
[ -x /usr/lib/amanda/ndmjob ] || need+=(amanda-common)
command -v restore >/dev/null || [ -x /usr/sbin/restore ] || need+=(dump)
# mke2fs -d and debugfs put a tree into an ext4 image for the stock dump to read
command -v mke2fs >/dev/null || [ -x /usr/sbin/mke2fs ] || [ -x /sbin/mke2fs ] || need+=(e2fsprogs)
command -v tar >/dev/null || need+=(tar)
# the REST tests drive the REST view with curl
command -v curl >/dev/null || need+=(curl)
# the st driver's unit tests compare its ioctl numbers with the kernel's header
[ -f /usr/include/linux/mtio.h ] || need+=(linux-libc-dev)
# tests/snapshot_btrfs.rs makes a btrfs file system in a loop-mounted image file
command -v mkfs.btrfs >/dev/null || [ -x /usr/sbin/mkfs.btrfs ] || [ -x /sbin/mkfs.btrfs ] || need+=(btrfs-progs)
# tests/metrics.rs has a real Prometheus scrape ndmpd and promtool check what it serves
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || need+=(prometheus)
# tests/web_page.rs loads the web page in headless Chromium and clicks it over DevTools
command -v chromium >/dev/null || need+=(chromium)
# tests/rest_tls.rs compares the printed fingerprint with openssl's and makes a certificate
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
    echo "== installing ${need[*]}"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# `ndmpd dma backup` records each backup in a catalog (default under ~/.local/share): the
# tests that run it without --catalog write to a scratch one instead of the user's
catalog_dir=$(mktemp -d)
trap 'rm -rf "$catalog_dir"' EXIT
export NDMPD_CATALOG="$catalog_dir/catalog.db"

# Release mode: the end-to-end tests move real data, and it keeps the suite fast on 2 cores.
cargo test --release --all-targets "$@"

# The package stage (the whole suite only, not a single test target): build the .deb,
# dpkg -i it, run the installed check-config and --version, verify the unit, remove it.
if [ $# -eq 0 ]; then
    scripts/package-test.sh
fi
