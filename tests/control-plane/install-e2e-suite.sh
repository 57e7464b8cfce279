#!/usr/bin/env bash
# Builds Kubernetes 1.20.2's own end-to-end suite (e2e.test) and the ginkgo runner that runs it in
# parallel, from the source tree tests/control-plane/install.sh already fetched, offline, with
# Debian's Go: what the node conformance benchmark (host/benches/conformance.rs) runs.
#
#   tests/control-plane/install-e2e-suite.sh [DIR]   DIR as install.sh's
#   -> DIR/bin/{e2e.test,ginkgo}
#
# 15-25 minutes on two cores the first time; afterwards it finds the binaries and returns at once.
set -euo pipefail
DIR=${1:-${KUBE_E2E_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-e2e}}
BIN=$DIR/bin GOPATH=$DIR/gopath
K8S=$GOPATH/src/k8s.io/kubernetes
if [ -x "$BIN/e2e.test" ] && [ -x "$BIN/ginkgo" ]; then echo "e2e suite already installed in $BIN"; exit 0; fi
[ -d "$K8S" ] || { echo "install-e2e-suite.sh: no Kubernetes source in $K8S: run tests/control-plane/install.sh first" >&2; exit 1; }
cd "$K8S"
export GO111MODULE=off GOFLAGS= GOPATH GOCACHE=$DIR/gocache CGO_ENABLED=0
# The suite's manifests and test images are compiled in; upstream generates the file with the vendored
# go-bindata (hack/generate-bindata.sh, whose arguments these are) and the source package lacks it.
B=test/e2e/generated/bindata.go
if [ ! -f $B ]; then
  go build -o "$DIR/go-bindata" ./vendor/github.com/go-bindata/go-bindata/go-bindata
  "$DIR/go-bindata" -nometadata -o $B.tmp -pkg generated \
    -ignore .jpg -ignore .png -ignore .md -ignore 'BUILD(\.bazel)?' \
    "test/conformance/testdata/..." "test/e2e/testing-manifests/..." "test/e2e_node/testing-manifests/..." \
    "test/images/..." "test/fixtures/..."
  mv $B.tmp $B
fi
V=k8s.io/kubernetes/vendor/k8s.io
LD="-s -w -X $V/component-base/version.gitVersion=v1.20.2 -X $V/component-base/version.gitMajor=1 -X $V/component-base/version.gitMinor=20 -X $V/client-go/pkg/version.gitVersion=v1.20.2"
if [ ! -x "$BIN/ginkgo" ]; then echo "building ginkgo"; go build -o "$BIN/ginkgo.partial" ./vendor/github.com/onsi/ginkgo/ginkgo && mv "$BIN/ginkgo.partial" "$BIN/ginkgo"; fi
if [ ! -x "$BIN/e2e.test" ]; then echo "building e2e.test"; go test -c -ldflags "$LD" -o "$BIN/e2e.test.partial" ./test/e2e && mv "$BIN/e2e.test.partial" "$BIN/e2e.test"; fi
rm -rf "$DIR/gocache"
echo "e2e suite 1.20.2 installed in $BIN"
