"""Certificate Transparency monitor: tails RFC 6962 and static-ct-api (tiled) logs, verifies
every tree head against the entries downloaded, and matches watched domain names."""
