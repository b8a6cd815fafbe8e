#!/usr/bin/env bash
# certbot --manual-cleanup-hook for dns-01: withdraw the value the auth hook published.
set -euo pipefail
exec "$(dirname "$0")/txt-record.sh" remove "_acme-challenge.${CERTBOT_DOMAIN}" "${CERTBOT_VALIDATION}"
