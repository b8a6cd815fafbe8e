"""The revocation front end: CRLs and OCSP over plain HTTP (RFC 5019 §5, RFC 6960 Appendix A).

It holds no keys and builds nothing signed: it asks ``ca.crl.CRLService`` for CRLs and
``ca.ocsp.OCSPResponder`` for OCSP responses, and adds the HTTP caching headers. See
docs/revocation.md.
"""

from revocation_server.app import create_app
from revocation_server.context import CRLSource, OCSPSource

__all__ = ["CRLSource", "OCSPSource", "create_app"]
