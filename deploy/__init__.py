"""Deployment targets: certificates and keys written over SSH (asyncssh), reloaded, and verified
by scanning the endpoint."""
