#!/usr/bin/env bash
# Add or remove one TXT value for the test DNS server (tests/support/dnsserver.py), which reads
# $CERTYARD_TEST_TXT_DIR/<fqdn> (lower case, no trailing dot, one value per line) at query time.
#   txt-record.sh add|remove <fqdn> <value>
set -euo pipefail

dir="${CERTYARD_TEST_TXT_DIR:?CERTYARD_TEST_TXT_DIR is not set}"
action="$1"
fqdn="${2%.}"
fqdn="${fqdn,,}"
value="$3"
file="$dir/$fqdn"

mkdir -p "$dir"
exec 9>"$dir/.lock"
flock -w 30 9
case "$action" in
    add)
        tmp="$(mktemp "$dir/.tmp.XXXXXX")"
        { [[ -f "$file" ]] && cat "$file"; printf '%s\n' "$value"; } >"$tmp" || true
        mv -f "$tmp" "$file"
        ;;
    remove)
        if [[ -f "$file" ]]; then
            tmp="$(mktemp "$dir/.tmp.XXXXXX")"
            grep -vxF -- "$value" "$file" >"$tmp" || true
            if [[ -s "$tmp" ]]; then mv -f "$tmp" "$file"; else rm -f "$tmp" "$file"; fi
        fi
        ;;
    *)
        echo "usage: $0 add|remove <fqdn> <value>" >&2
        exit 2
        ;;
esac
