#!/usr/bin/env bash
# Redraws the pictures of docs/tutorial.md: builds examples/ against an
# installed graft, runs the programs that write .dot files, and renders each
# with Graphviz into docs/tutorial/NAME.svg.
#
#   tools/render-tutorial-graphs.sh [PREFIX]
#
# PREFIX is a graft install (cmake --install ... --prefix PREFIX). Without it,
# build/release is installed into a temporary prefix first.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
command -v dot >/dev/null || { echo "render-tutorial-graphs: needs Graphviz's dot (apt-get install graphviz)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if (($# > 0)); then
  prefix=$(cd "$1" && pwd)
else
  [[ -f $root/build/release/cmake_install.cmake ]] || {
    echo "render-tutorial-graphs: no build/release to install; build it or pass an install prefix" >&2
    exit 1
  }
  prefix=$work/prefix
  cmake --install "$root/build/release" --prefix "$prefix" >/dev/null
fi

programs=(tutorial_graph tutorial_dynamic tutorial_training)
cmake -S "$root/examples" -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/build" --target "${programs[@]}" >/dev/null

mkdir "$work/dot"
for program in "${programs[@]}"; do
  "$work/build/$program" "$work/dot" >/dev/null
done
mkdir -p "$root/docs/tutorial"
for graph in "$work"/dot/*.dot; do
  svg=$root/docs/tutorial/$(basename "${graph%.dot}").svg
  dot -Tsvg "$graph" -o "$svg"
  echo "wrote ${svg#"$root"/}"
done
