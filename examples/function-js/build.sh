#!/bin/sh
# Builds the JavaScript function into a wasi:http/proxy component: ./build.sh [OUT]
# (default OUT: hello.wasm beside this script).
#
# Needs componentize-js (and the jco it builds with) at the versions
# tests/third-party/package-lock.json pins, as scripts/third-party-toolchains installs them (in
# <target dir>/third-party/node; $SKIFF_TOOLCHAINS names another dir), else componentize-js on
# PATH. Its StarlingMonkey engine and wizer come in the npm packages: the build downloads
# nothing (no --aot, which would fetch weval). About 15 s; the component is about 13 MB.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/hello.wasm}
case $out in /*) ;; *) out=$(pwd)/$out ;; esac
tools=${SKIFF_TOOLCHAINS:-$here/../../${CARGO_TARGET_DIR:-target}/third-party}
componentize_js=$tools/node/node_modules/.bin/componentize-js
# The Node.js scripts/third-party-toolchains installed when the machine's is older than 20.
[ -x "$tools/nodejs/bin/node" ] && PATH="$tools/nodejs/bin:$PATH" && export PATH
[ -x "$componentize_js" ] || componentize_js=$(command -v componentize-js) || {
    echo "build.sh: componentize-js not found: run scripts/third-party-toolchains" >&2
    exit 1
}
cd "$here"
"$componentize_js" hello.js --wit wit --world-name hello -o "$out"
