#!/bin/sh
# Builds the Python function into a wasi:http/proxy component: ./build.sh [OUT]
# (default OUT: hello.wasm beside this script).
#
# Needs componentize-py at the version tests/third-party/requirements.txt pins, as
# scripts/third-party-toolchains installs it (in <target dir>/third-party/python;
# $SKIFF_TOOLCHAINS names another dir), else componentize-py on PATH. It bundles its CPython:
# the build downloads nothing. About 7 s on one core; the component is about 18 MB.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/hello.wasm}
case $out in /*) ;; *) out=$(pwd)/$out ;; esac
tools=${SKIFF_TOOLCHAINS:-$here/../../${CARGO_TARGET_DIR:-target}/third-party}
componentize_py=$tools/python/bin/componentize-py
[ -x "$componentize_py" ] || componentize_py=$(command -v componentize-py) || {
    echo "build.sh: componentize-py not found: run scripts/third-party-toolchains" >&2
    exit 1
}
cd "$here"
"$componentize_py" --quiet -d wit -w hello componentize app -o "$out"
