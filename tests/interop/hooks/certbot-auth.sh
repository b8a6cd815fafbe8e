#!/usr/bin/env bash
# certbot --manual-auth-hook for dns-01: publish $CERTBOT_VALIDATION at _acme-challenge.$CERTBOT_DOMAIN
# (for a wildcard certbot passes the base name, without "*.").
set -euo pipefail
exec "$(dirname "$0")/txt-record.sh" add "_acme-challenge.${CERTBOT_DOMAIN}" "${CERTBOT_VALIDATION}"
