#!/bin/sh
# install-deps.sh - install everything objfs needs to build, run and test on Debian 12,
# as root (it runs apt-get). Idempotent: packages already present are left alone.
set -eu
if [ "$(id -u)" != 0 ]; then
	echo "install-deps.sh: run as root (it installs Debian packages with apt-get)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
PKGS="autoconf automake libtool pkg-config gcc make
libfuse3-dev libcurl4-openssl-dev libssl-dev libxml2-dev libcmocka-dev
fuse3 ca-certificates curl openssl python3 procps iproute2 attr rsync psmisc git
radosgw ceph-mon ceph-osd ceph-common systemd util-linux
s3cmd s3fs rclone mandoc fio valgrind"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "install-deps.sh: installing:$missing"
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# FUSE needs its device; in containers it may have to be created.
[ -e /dev/fuse ] || mknod -m 0666 /dev/fuse c 10 229 || true
echo "install-deps.sh: all dependencies present"
