#!/usr/bin/env bash
# Installs the control plane the end-to-end tests run against: kube-apiserver, kube-controller-manager,
# kube-scheduler, kubemark (the real kubelet with a fake runtime) and kubectl (for the exec tests where the
# machine has none) built from Debian's Kubernetes 1.20.2 source package (it ships vendor/) with Debian's Go,
# and Debian's etcd. No internet beyond Debian's archive.
#
#   tests/control-plane/install.sh [DIR]     DIR: $KUBE_E2E_DIR, else ${XDG_CACHE_HOME:-~/.cache}/kube-e2e
#   -> DIR/bin/{etcd,kube-apiserver,kube-controller-manager,kube-scheduler,kubemark,kubectl}
#
# 10-15 minutes on two cores the first time; afterwards it finds the binaries and returns at once.
# The tests find DIR/bin by default; LABKUBELET_E2E_ASSETS names another folder (envtest's convention:
# the binaries by their upstream names), e.g. a release's binaries on a machine with internet.
# Needs root (or the packages golang-go, etcd-server and dpkg-dev installed) for apt-get.
set -euo pipefail
DIR=${1:-${KUBE_E2E_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-e2e}}
BIN=$DIR/bin SRC=$DIR/src GOPATH=$DIR/gopath
VERSION=1.20.2 DEBIAN_VERSION=1.20.5+really1.20.2-1.1+deb12u1
COMPONENTS="kube-apiserver kube-controller-manager kube-scheduler kubemark kubectl"
done_already=yes
for c in etcd $COMPONENTS; do [ -x "$BIN/$c" ] || done_already=no; done
if [ $done_already = yes ]; then echo "control plane $VERSION already installed in $BIN"; exit 0; fi
mkdir -p "$BIN" "$SRC"

apt_install() {
  [ "$(id -u)" = 0 ] || { echo "install.sh: need root to apt-get install $*; install them or run as root" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null; }
}
need=""
command -v go >/dev/null || need="$need golang-go"
command -v etcd >/dev/null || need="$need etcd-server"
[ -z "$need" ] || apt_install $need
ln -sf "$(command -v etcd)" "$BIN/etcd"

K8S=$GOPATH/src/k8s.io/kubernetes
if [ ! -d "$K8S" ]; then
  if ! (cd "$SRC" && apt-get source --download-only kubernetes=$DEBIAN_VERSION >/dev/null 2>&1); then
    # Not every machine lists Debian's source archive; add bookworm's.
    printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      > /etc/apt/sources.list.d/labkubelet-e2e-src.sources
    apt-get update >/dev/null
    (cd "$SRC" && apt-get source --download-only kubernetes=$DEBIAN_VERSION >/dev/null)
  fi
  (cd "$SRC" && tar xzf kubernetes_*.orig.tar.gz)
  mkdir -p "$(dirname "$K8S")"
  mv "$SRC/kubernetes-$VERSION" "$K8S"
fi
cd "$K8S"
# Go 1.19 refuses 1.20's go.mod in module mode; GOPATH mode builds the vendored tree as it is.
export GO111MODULE=off GOFLAGS= GOPATH GOCACHE=$DIR/gocache CGO_ENABLED=0
# Upstream generates the OpenAPI definitions at build time; the source package lacks them.
O=pkg/generated/openapi/zz_generated.openapi.go
if [ ! -f $O ]; then
  go build -o "$DIR/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
  dirs=$( { find pkg cmd plugin vendor -type f -name '*.go'; find staging/src -type f -name '*.go' | sed 's|^staging/src/|vendor/|'; } \
    | grep -v '^vendor/k8s.io/code-generator/\|^vendor/k8s.io/sample-apiserver/' | sort -u | while read -r f; do
      g=$f; [ -f "$g" ] || g=${f/#vendor\//staging/src/}; if grep -q '^// *+k8s:openapi-gen=' "$g" 2>/dev/null; then dirname "$f"; fi; done | LC_ALL=C sort -u)
  "$DIR/openapi-gen" --logtostderr -i "$(echo "$dirs" | sed 's|^|k8s.io/kubernetes/|' | paste -sd,)" \
    -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi -h hack/boilerplate/boilerplate.generatego.txt \
    -r "$DIR/openapi-violations.report"
fi
V=k8s.io/kubernetes/vendor/k8s.io
LD="-s -w -X $V/component-base/version.gitVersion=v$VERSION -X $V/component-base/version.gitMajor=1 -X $V/component-base/version.gitMinor=20 -X $V/client-go/pkg/version.gitVersion=v$VERSION -X $V/component-base/version.gitTreeState=clean"
for c in $COMPONENTS; do
  if [ ! -x "$BIN/$c" ]; then echo "building $c"; go build -ldflags "$LD" -o "$BIN/$c.partial" ./cmd/$c && mv "$BIN/$c.partial" "$BIN/$c"; fi
done
# The build cache (1.5 GB) only speeds a rebuild, which the installed binaries make rare.
rm -rf "$DIR/gocache"
echo "control plane $VERSION installed in $BIN"
