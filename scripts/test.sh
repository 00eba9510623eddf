#!/usr/bin/env bash
# Installs dependencies, builds, and runs the whole test suite with ctest.
# This is the README's test command and what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh -DPARLEY_WERROR=ON
cd "${PARLEY_BUILD_DIR:-build}"
ctest --output-on-failure -j2 --timeout 600
