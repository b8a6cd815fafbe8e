#!/usr/bin/env bash
# lego "exec" DNS provider (EXEC_PATH): called as `present|cleanup <fqdn> <value>`, where <fqdn>
# is the record name with a trailing dot (_acme-challenge.example.test.).
set -euo pipefail
case "${1:-}" in
    present) exec "$(dirname "$0")/txt-record.sh" add "$2" "$3" ;;
    cleanup) exec "$(dirname "$0")/txt-record.sh" remove "$2" "$3" ;;
    *) echo "usage: $0 present|cleanup <fqdn> <value>" >&2; exit 2 ;;
esac
