#!/usr/bin/env bash
# Rebuilds the plugin components committed here from their sources and records the hash of those sources
# (SOURCES.sha256), so machines whose toolchain lacks the wasm32-wasip2 target build and test the host with
# them. Run it after changing wit/, guest-sdk/, plugins/ or tests/plugins/; it needs the target
# (rustup target add wasm32-wasip2). A test fails while these are older than their sources.
set -euo pipefail
cd "$(dirname "$0")/../.."
LABKUBELET_PLUGINS=source LABKUBELET_UPDATE_PREBUILT=1 cargo build --locked -p labkubelet
ls -l plugins/prebuilt/*.wasm
