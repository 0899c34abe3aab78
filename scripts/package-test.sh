#!/usr/bin/env bash
# The package stage of CI: builds the .deb (scripts/deb.sh), installs it with dpkg -i, checks
# the installed binary, shipped config and unit, and removes it again. Never starts the
# service: CI has no systemd as PID 1.
set -euo pipefail
cd "$(dirname "$0")/.."
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
command -v systemd-analyze >/dev/null || {
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends systemd >/dev/null
}
deb=$(scripts/deb.sh | tail -1)
[ -f "$deb" ] || { echo "no package built: $deb"; exit 1; }
echo "== package stage: $deb"
if dpkg -s ndmpd >/dev/null 2>&1; then
    echo "ndmpd is already installed here: the stage would remove it; refusing"; exit 1
fi
cleanup() { $sudo dpkg --purge ndmpd >/dev/null 2>&1 || true; }
trap cleanup EXIT
$sudo dpkg -i "$deb"
/usr/bin/ndmpd --version | grep -qx "ndmpd $(grep -m1 '^version' Cargo.toml | cut -d'"' -f2)"
/usr/bin/ndmpd check-config /etc/ndmpd/ndmpd.toml
getent passwd ndmpd >/dev/null || { echo "postinst made no ndmpd user"; exit 1; }
[ "$(stat -c %U /var/lib/ndmpd)" = ndmpd ] || { echo "/var/lib/ndmpd is not ndmpd's"; exit 1; }
unit=/lib/systemd/system/ndmpd.service
# verify prints its findings and fails on errors; any output at all is a finding
out=$(systemd-analyze verify "$unit" 2>&1) || { echo "$out"; exit 1; }
[ -z "$out" ] || { echo "systemd-analyze verify $unit:"; echo "$out"; exit 1; }
man -w ndmpd-serve >/dev/null 2>&1 || [ -f /usr/share/man/man1/ndmpd-serve.1.gz ]
[ -f /usr/share/bash-completion/completions/ndmpd ]
dpkg-query -W -f '${Conffiles}\n' ndmpd | grep -q ' /etc/ndmpd/ndmpd.toml '
$sudo dpkg -r ndmpd
[ ! -e /usr/bin/ndmpd ] || { echo "dpkg -r left /usr/bin/ndmpd"; exit 1; }
$sudo dpkg --purge ndmpd
[ ! -e /etc/ndmpd/ndmpd.toml ] || { echo "purge left the conffile"; exit 1; }
trap - EXIT
echo "== package stage: OK"
