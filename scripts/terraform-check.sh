#!/usr/bin/env bash
# terraform-check.sh: checks the Terraform modules in infra/terraform with real
# OpenTofu and the real provider code, offline.
#
# It builds OpenTofu and the hashicorp/google and hashicorp/aws providers from
# source (through the Go module proxy, at the pinned versions below) into a
# cache folder, installs the providers for tofu from a local filesystem mirror,
# and runs `tofu fmt -check`, `tofu init`, `tofu validate` and `tofu test` on
# infra/terraform/gcp and infra/terraform/aws. With --schema it also rewrites
# infra/terraform/testdata/schema.json (the trimmed provider schema the Go test
# in infra/terraform checks every block against); without it, checks that
# file is current.
#
# Slow the first time (the AWS provider alone is ~30 min of compiling on 2
# cores); later runs reuse the cache. Not part of `make test`.
#
#   scripts/terraform-check.sh [--schema]
#   STATJOB_TF_CACHE=DIR   cache folder (default ~/.cache/statjob-terraform)
set -euo pipefail

TOFU_VERSION=v1.10.6
# The providers' source at a pinned commit. The Go module versions are
# pseudo-versions (the repositories tag no Go module releases); the provider
# versions are the ones their CHANGELOG.md names at that commit, and the ones
# the modules' required_providers accept.
GOOGLE_MODULE=github.com/hashicorp/terraform-provider-google@v1.20.1-0.20260828184646-f3721fb45fa3
GOOGLE_VERSION=8.0.0
AWS_MODULE=github.com/hashicorp/terraform-provider-aws@v1.60.1-0.20260602190131-5f2286d6d836
AWS_VERSION=6.48.0

write_schema=0
[[ "${1:-}" == --schema ]] && write_schema=1

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${STATJOB_TF_CACHE:-$HOME/.cache/statjob-terraform}
mkdir -p "$cache/bin" "$cache/src"

# build NAME MODULE@VERSION PACKAGE: go-builds PACKAGE of the module's source
# into $cache/bin/NAME unless it is there. A copy of the source, because
# `go install` refuses modules whose go.mod has replace directives.
build() {
	local name=$1 module=$2 pkg=$3
	[[ -x "$cache/bin/$name" ]] && return
	echo "building $name from $module (slow)" >&2
	local dir
	dir=$(go mod download -json "$module" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
	[[ -n "$dir" ]] || { echo "go mod download $module: no Dir" >&2; exit 1; }
	rm -rf "$cache/src/$name"
	cp -r "$dir" "$cache/src/$name"
	chmod -R u+w "$cache/src/$name"
	(cd "$cache/src/$name" && nice -n 19 go build -trimpath -ldflags='-s -w' -o "$cache/bin/$name.tmp" "$pkg")
	mv "$cache/bin/$name.tmp" "$cache/bin/$name"
	rm -rf "$cache/src/$name"
}

# Outside any module, so that go mod download fetches exactly these versions.
cd "$cache"
build tofu "github.com/opentofu/opentofu@$TOFU_VERSION" ./cmd/tofu
build terraform-provider-google "$GOOGLE_MODULE" .
build terraform-provider-aws "$AWS_MODULE" .

# The filesystem mirror, under both registries' names so that modules written
# for either resolve hashicorp/* here and never reach the network.
for host in registry.opentofu.org registry.terraform.io; do
	for p in google:$GOOGLE_VERSION aws:$AWS_VERSION; do
		name=${p%%:*} version=${p#*:}
		d="$cache/mirror/$host/hashicorp/$name/$version/linux_amd64"
		mkdir -p "$d"
		ln -f "$cache/bin/terraform-provider-$name" "$d/terraform-provider-${name}_v$version" 2>/dev/null ||
			cp "$cache/bin/terraform-provider-$name" "$d/terraform-provider-${name}_v$version"
	done
done
cat >"$cache/tofurc" <<EOF
provider_installation {
  filesystem_mirror {
    path    = "$cache/mirror"
    include = ["registry.opentofu.org/hashicorp/*", "registry.terraform.io/hashicorp/*"]
  }
}
EOF
export TF_CLI_CONFIG_FILE=$cache/tofurc CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1
tofu=$cache/bin/tofu

cd "$repo/infra/terraform"
echo "== tofu fmt -check -recursive" >&2
"$tofu" fmt -check -recursive -diff .
for m in gcp aws; do
	echo "== $m: init, validate, test" >&2
	(cd "$m" && "$tofu" init -backend=false -input=false -no-color >/dev/null &&
		"$tofu" validate -no-color && "$tofu" test -no-color)
done

# The trimmed schema: only the resource and data source types the modules
# use, only the parts the Go test reads (attributes' required/optional/
# computed, nested blocks). Without --schema, the committed one must match.
types=$(cat gcp/*.tf aws/*.tf | sed -n 's/^\(resource\|data\) "\([a-z0-9_]*\)".*/\1 \2/p' | sort -u |
	jq -R -s 'split("\n") | map(select(. != "") | split(" ")) | map({kind: .[0], type: .[1]})')
schema=$(mktemp)
trap 'rm -f "$schema"' EXIT
for m in gcp aws; do (cd "$m" && "$tofu" providers schema -json); done | jq -s --argjson types "$types" '
	def trim: {attributes: ((.attributes // {}) | with_entries(.value |= {required, optional, computed} | .value |= with_entries(select(.value != null)))),
	           block_types: ((.block_types // {}) | with_entries(.value |= {nesting_mode, min_items, max_items, block: (.block | trim)} | .value |= with_entries(select(.value != null))))};
	[.[].provider_schemas[]] as $ps
	| {resource: ([$types[] | select(.kind == "resource") | .type as $t | {key: $t, value: ($ps | map(.resource_schemas[$t] // empty) | first | .block | trim)}] | from_entries),
	   data: ([$types[] | select(.kind == "data") | .type as $t | {key: $t, value: ($ps | map(.data_source_schemas[$t] // empty) | first | .block | trim)}] | from_entries)}
' >"$schema"
if ((write_schema)); then
	cp "$schema" testdata/schema.json
	echo "wrote infra/terraform/testdata/schema.json" >&2
elif ! cmp -s "$schema" testdata/schema.json; then
	echo "infra/terraform/testdata/schema.json differs from the providers' schema: rerun with --schema" >&2
	exit 1
fi
echo "terraform-check: ok" >&2
