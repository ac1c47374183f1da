#!/usr/bin/env bash
# Fails when docs/tutorial.md and the programs it quotes have drifted apart.
#
#   tools/check-tutorial-snippets.sh [REPO_ROOT]
#
# In examples/*.cpp a quoted region is marked
#     // [tutorial:NAME]
#     ...code...
#     // [end]
# and in the tutorial each ```cpp block follows the line
#     <!-- snippet: examples/FILE.cpp:NAME -->
# The block must equal the region, less the indentation of its marker line.
# Also checked: every ```cpp block is such a snippet, every marked region is
# quoted, markers are paired, and every image the tutorial shows exists.
set -euo pipefail
root=$(cd "${1:-$(dirname "$0")/..}" && pwd)
doc=docs/tutorial.md
cd "$root"
[[ -f $doc ]] || { echo "check-tutorial-snippets: $root/$doc not found" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
errors=0
fail() {
  echo "check-tutorial-snippets: $*" >&2
  errors=$((errors + 1))
}

# Every marked region of examples/*.cpp, into $work/regions/FILE.cpp:NAME.
mkdir "$work/regions"
for src in examples/*.cpp; do
  awk -v out="$work/regions/$(basename "$src")" -v src="$src" '
    function problem(msg) { print src ":" FNR ": " msg > "/dev/stderr"; bad = 1 }
    /^[ \t]*\/\/ \[tutorial:[A-Za-z0-9_-]+\][ \t]*$/ {
      if (name != "") problem("[tutorial:...] inside region " name)
      match($0, /^[ \t]*/); indent = substr($0, 1, RLENGTH)
      name = $0; sub(/^[^[]*\[tutorial:/, "", name); sub(/\].*$/, "", name)
      file = out ":" name
      if (name in seen) problem("region " name " marked twice")
      seen[name] = 1; printf "" > file; next
    }
    /^[ \t]*\/\/ \[end\][ \t]*$/ {
      if (name == "") problem("[end] outside a region")
      else close(file)
      name = ""; next
    }
    /\[tutorial:|\/\/ \[end\]/ { problem("malformed marker: " $0) }
    name != "" {
      line = $0
      if (substr(line, 1, length(indent)) == indent) line = substr(line, length(indent) + 1)
      else if (line !~ /^[ \t]*$/) problem("line less indented than its marker")
      else line = ""
      print line > file
    }
    END {
      if (name != "") problem("region " name " has no [end]")
      exit bad
    }' "$src" || errors=$((errors + 1))
done

# Every ```cpp block of the tutorial, with the snippet line before it, into
# $work/blocks/N, listed in $work/blocks.txt as "N FILE:NAME LINE".
mkdir "$work/blocks"
awk -v dir="$work/blocks" -v doc="$doc" '
  /^<!-- snippet: [^ ]+ -->[ \t]*$/ { ref = $3; ref_line = FNR; next }
  in_block && /^```[ \t]*$/ { close(file); in_block = 0; ref = ""; next }
  in_block { print > file; next }
  /^```cpp[ \t]*$/ {
    n++; file = dir "/" n; printf "" > file; in_block = 1
    if (ref == "" || ref_line != FNR - 1) {
      print doc ":" FNR ": a ```cpp block without a <!-- snippet: examples/FILE.cpp:NAME --> line just above it" > "/dev/stderr"
      bad = 1
    }
    print n, (ref == "" ? "-" : ref), FNR > (dir ".txt"); next
  }
  /^```/ { in_other = !in_other }
  { ref = "" }
  END {
    if (in_block) { print doc ": a ```cpp block is never closed" > "/dev/stderr"; bad = 1 }
    exit bad
  }' "$doc" || errors=$((errors + 1))
touch "$work/blocks.txt"

declare -A quoted
while read -r n ref line; do
  [[ $ref == - ]] && continue
  path=${ref%:*}
  name=${ref##*:}
  region="$work/regions/$(basename "$path"):$name"
  if [[ $path != examples/*.cpp || ! -f $path ]]; then
    fail "$doc:$line: $path is not a program in examples/"
  elif [[ ! -f $region ]]; then
    fail "$doc:$line: $path has no region [tutorial:$name]"
  elif ! diff -u --label "$path [tutorial:$name]" --label "$doc:$line" "$region" "$work/blocks/$n" >&2; then
    fail "$doc:$line: the code block differs from $path [tutorial:$name] (diff above)"
  fi
  quoted["$(basename "$path"):$name"]=1
done <"$work/blocks.txt"

for region in "$work"/regions/*:*; do
  [[ -e $region ]] || continue
  key=$(basename "$region")
  [[ -n ${quoted[$key]:-} ]] || fail "examples/${key%:*} region [tutorial:${key##*:}] is quoted nowhere in $doc"
done

# Images: ![text](path) relative to docs/.
while read -r image; do
  [[ -f docs/$image ]] || fail "$doc shows $image, but docs/$image does not exist (tools/render-tutorial-graphs.sh makes it)"
done < <(grep -o '!\[[^]]*\]([^)]*)' "$doc" | sed 's/.*](\(.*\))/\1/')

if ((errors)); then
  echo "check-tutorial-snippets: $errors problem(s)" >&2
  exit 1
fi
echo "check-tutorial-snippets: $(wc -l <"$work/blocks.txt") code blocks match their regions in examples/"
