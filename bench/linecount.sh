#!/usr/bin/env bash
# Counts production lines of Rust (and .proto) sources, per path given, at the working tree or at a commit.
#
#   bench/linecount.sh [--rev REV] [PATH...]
#
# Production means: not a test. Left out are files named tests.rs or *_tests.rs, files under a tests/ directory,
# and every item behind #[cfg(test)] (a `mod tests { ... }` block, a test-only fn or use; a `#[cfg(test)] mod x;`
# line itself). Two figures per path:
#   lines  every other line, blank and comment lines included (the figure issue 18 speaks of);
#   code   the same without blank lines and lines that hold only a // comment (doc comments included).
# Without PATH it counts the node's executor code: shim/src, node-agent/src/shim, node-agent/src/containers.
# With --rev REV it reads the files as they were at REV (git show), so one script counts before and after alike.
set -euo pipefail

rev=""
if [[ "${1:-}" == "--rev" ]]; then
    rev="$2"
    shift 2
fi
paths=("$@")
if [[ ${#paths[@]} -eq 0 ]]; then
    paths=(shim/src node-agent/src/shim node-agent/src/containers)
fi
cd "$(git rev-parse --show-toplevel)"

list_files() {
    if [[ -n "$rev" ]]; then
        git ls-tree -r --name-only "$rev" -- "$1"
    else
        git ls-files --cached --others --exclude-standard -- "$1"
    fi
}

read_file() {
    if [[ -n "$rev" ]]; then git show "$rev:$1"; else cat "$1"; fi
}

# Prints "lines code" for one file read on stdin.
count() {
    awk '
    function braces(s,    t, o, c) {
        t = s
        gsub(/\\./, "", t)            # escapes inside literals
        gsub(/"[^"]*"/, "", t)        # string literals
        gsub(/'"'"'.'"'"'/, "", t)    # char literals such as the brace char
        sub(/\/\/.*/, "", t)          # a trailing comment
        o = gsub(/\{/, "{", t); c = gsub(/\}/, "}", t)
        return o - c
    }
    BEGIN { skipping = 0; depth = 0; opened = 0; lines = 0; code = 0 }
    {
        if (!skipping && $0 ~ /^[ \t]*#\[cfg\(test\)\]/) { skipping = 1; depth = 0; opened = 0; next }
        if (skipping) {
            d = braces($0)
            if (d != 0 || $0 ~ /\{/) opened = 1
            depth += d
            if (opened && depth <= 0) { skipping = 0 }
            else if (!opened && $0 ~ /;[ \t]*$/ && $0 !~ /^[ \t]*#/) { skipping = 0 }
            next
        }
        lines++
        if ($0 !~ /^[ \t]*$/ && $0 !~ /^[ \t]*\/\//) code++
    }
    END { print lines, code }'
}

total_lines=0
total_code=0
printf '%-34s %6s %7s %7s\n' "path${rev:+ @ $rev}" files lines code
for p in "${paths[@]}"; do
    files=0; lines=0; code=0
    while IFS= read -r f; do
        case "$f" in
            *.rs | *.proto) ;;
            *) continue ;;
        esac
        case "$f" in
            */tests.rs | *_tests.rs | tests/* | */tests/*) continue ;;
        esac
        read -r l c < <(read_file "$f" | count)
        files=$((files + 1)); lines=$((lines + l)); code=$((code + c))
    done < <(list_files "$p")
    printf '%-34s %6d %7d %7d\n' "$p" "$files" "$lines" "$code"
    total_lines=$((total_lines + lines)); total_code=$((total_code + code))
done
printf '%-34s %6s %7d %7d\n' total "" "$total_lines" "$total_code"
