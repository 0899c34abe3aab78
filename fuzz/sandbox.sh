#!/bin/sh
# Runs a command in a private mount namespace where every file system is read-only except
# fuzz/corpus, fuzz/artifacts and a fresh tmpfs on /tmp, so that a reader fuzzed as root
# cannot change anything else, whatever a hostile image makes it do. Linux, as root.
set -eu
fuzz=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$fuzz/corpus" "$fuzz/artifacts"
exec unshare -m sh -eu -c '
fuzz=$1; shift
mount --make-rprivate /
mount --bind "$fuzz/corpus" "$fuzz/corpus"
mount --bind "$fuzz/artifacts" "$fuzz/artifacts"
mount -t tmpfs -o size=2g,mode=1777 ndmpd-fuzz /tmp
# Every other mount read-only, but /proc and the pty file system.
findmnt -rno TARGET | while read -r m; do
  case "$m" in "$fuzz"/corpus|"$fuzz"/artifacts|/tmp|/proc|/proc/*|/dev/pts) continue ;; esac
  mount -o remount,bind,ro "$m" 2>/dev/null || true
done
# Re-enter the working directory through the new mounts.
cd "$PWD"
exec "$@"
' sandbox "$fuzz" "$@"
