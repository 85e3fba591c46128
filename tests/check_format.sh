#!/bin/sh
# Fails when a C/C++ source file differs from what clang-format makes of it.
set -eu
cd "$1"
files=$(find include lib adapters tests bench examples fuzz tools -type f \
        \( -name '*.c' -o -name '*.h' -o -name '*.cc' -o -name '*.cpp' -o -name '*.hpp' \) \
        -not -path '*/corpus/*' 2>/dev/null | sort)
clang-format --dry-run --Werror $files
echo "$(echo "$files" | wc -l) files formatted"
