#!/usr/bin/env bash
# Runs the README's two commands as a new user would: in a pristine Debian 12
# root (debootstrap --variant=minbase bookworm), as root, with a clone of the
# current commit. Prints each command's exit code and time.
#
#   tools/check-fresh-machine.sh [--main-only] [--keep]
#
# --main-only  runs only the main command (tools/run-main.sh)
# --keep       leaves the root in place afterwards (its path is printed)
#
# Only the bare debootstrap result is cached (as a tarball, in
# $GRAFT_FRESH_CACHE, default ~/.cache/graft); every run unpacks a fresh copy,
# since a root that has run set-up is no longer pristine. Needs root (chroot,
# mount) and Debian's package mirror. Not part of CI: it downloads and builds
# everything, so it takes as long as the two commands do on a new machine.
set -euo pipefail

# All of it is one function, read whole before it runs, so editing this file
# during a run (it takes a while) cannot change what the run does.
main() {

main_only=0
keep=0
for arg in "$@"; do
  case "$arg" in
    --main-only) main_only=1 ;;
    --keep) keep=1 ;;
    *) echo "usage: $0 [--main-only] [--keep]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "check-fresh-machine: run as root (it uses debootstrap, chroot and mount)" >&2; exit 2; }

repo="$(cd "$(dirname "$0")/.." && pwd)"
commit="$(git -C "$repo" rev-parse HEAD)"
mirror="${GRAFT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
cache="${GRAFT_FRESH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/graft}"
tarball="$cache/bookworm-minbase.tar"

if ! command -v debootstrap >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap
fi

if [ ! -f "$tarball" ]; then
  mkdir -p "$cache"
  bare="$(mktemp -d "${TMPDIR:-/var/tmp}/graft-debootstrap.XXXXXX")"
  echo "check-fresh-machine: debootstrap --variant=minbase bookworm (cached in $tarball)"
  debootstrap --variant=minbase bookworm "$bare" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
    { echo "check-fresh-machine: debootstrap failed, see $cache/debootstrap.log" >&2; rm -rf "$bare"; exit 1; }
  tar -C "$bare" -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
  rm -rf "$bare"
fi

root="$(mktemp -d "${TMPDIR:-/var/tmp}/graft-fresh.XXXXXX")"
mounted=()
cleanup() {
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[i]}" || umount -l "${mounted[i]}" || true; done
  if [ "$keep" -eq 1 ]; then
    echo "check-fresh-machine: the root is kept at $root"
  elif grep -q " $root/" /proc/mounts; then  # never delete through a bind mount of /dev
    echo "check-fresh-machine: $root still has mounts; not removed" >&2
  else
    rm -rf "$root"
  fi
}
trap cleanup EXIT
mount_in() {  # mount_in TARGET mount-arguments...
  local target="$root$1"
  shift
  mkdir -p "$target"
  mount "$@" "$target"
  mounted+=("$target")
}

tar -C "$root" -xf "$tarball"
mount_in /proc -t proc proc
mount_in /sys -t sysfs sysfs
mount_in /dev --bind /dev
mount_in /dev/pts -t devpts devpts
mount_in /dev/shm -t tmpfs shm
cp /etc/resolv.conf "$root/etc/resolv.conf"
git clone -q --no-local "$repo" "$root/root/graft"
git -C "$root/root/graft" checkout -q --detach "$commit"
echo "check-fresh-machine: commit $commit in $root"

run() {  # run NAME COMMAND: prints its exit code and time
  local name="$1" command="$2" start rc
  echo "check-fresh-machine: $name: $command"
  start=$(date +%s)
  set +e
  chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /bin/bash -c "cd /root/graft && $command"
  rc=$?
  set -e
  results+=("$name: exit $rc in $(( ($(date +%s) - start) / 60 )) min $(( ($(date +%s) - start) % 60 )) s")
  echo "check-fresh-machine: ${results[-1]}"
  return $rc
}

results=()
status=0
run main tools/run-main.sh || status=1
if [ "$main_only" -eq 0 ]; then
  run tests tools/run-tests.sh || status=1
fi
echo "check-fresh-machine: summary for $commit"
printf '  %s\n' "${results[@]}"
exit $status
}

main "$@"
