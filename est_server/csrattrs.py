"""The CSR attributes a label asks for (RFC 7030 §4.5.2, in the form RFC 9908 defines).

Derived from the label's certificate profile and policies:

- ``challengePassword`` as a bare OID when the label requires the tls-unique channel binding
  (RFC 7030 §3.5, §4.5.2);
- one ``id-aa-certificationRequestInfoTemplate`` attribute (RFC 9908 §3.4): the subject CN the
  client fills in (no value), the key type when the profile and the label's chain allow exactly
  one algorithm (and curve), and an ``id-aa-extensionReqTemplate`` with the extended key usage
  the profile fixes (a value: the CA puts exactly that) and, for TLS server profiles, the
  subjectAltName the client must fill in (no value).

pyasn1-alt-modules carries the RFC 9908 / RFC 7030 ASN.1 modules, so nothing here is hand-encoded.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from pyasn1.codec.der import encoder
from pyasn1.type import univ
from pyasn1_alt_modules import rfc5280, rfc7030, rfc9908

from ca.config import CLIENT_AUTH, SERVER_AUTH, ProfileConfig

CHALLENGE_PASSWORD = "1.2.840.113549.1.9.7"  # noqa: S105 (an OID, PKCS #9)
EC_PUBLIC_KEY = "1.2.840.10045.2.1"
RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
_CURVES = {"ec-p256": "1.2.840.10045.3.1.7", "ec-p384": "1.3.132.0.34"}
_EKUS = {SERVER_AUTH: ExtendedKeyUsageOID.SERVER_AUTH, CLIENT_AUTH: ExtendedKeyUsageOID.CLIENT_AUTH}


def _allowed_key_types(profile: ProfileConfig, chain: str | None) -> list[str]:
    types = list(profile.key_types)
    if chain == "ecdsa":
        types = [t for t in types if t.startswith("ec-")]
    elif chain == "rsa":
        types = [t for t in types if t.startswith("rsa-")]
    return types


def _key_algorithm(types: Sequence[str]) -> rfc5280.AlgorithmIdentifier | None:
    """The key algorithm (RFC 9908 §3.4: subjectPublicKey absent) when only one fits."""
    algorithm = rfc5280.AlgorithmIdentifier()
    if types and all(t.startswith("rsa-") for t in types):
        algorithm["algorithm"] = univ.ObjectIdentifier(RSA_ENCRYPTION)
        algorithm["parameters"] = encoder.encode(univ.Null(""))
    elif len(types) == 1 and types[0] in _CURVES:
        algorithm["algorithm"] = univ.ObjectIdentifier(EC_PUBLIC_KEY)
        algorithm["parameters"] = encoder.encode(univ.ObjectIdentifier(_CURVES[types[0]]))
    else:
        return None
    return algorithm


def _extension_templates(profile: ProfileConfig) -> rfc9908.ExtensionReqTemplate:
    templates = rfc9908.ExtensionReqTemplate()
    ekus = profile.ekus or ((SERVER_AUTH,) if profile.is_server else (CLIENT_AUTH,))
    eku = rfc9908.ExtensionTemplate()
    eku["extnID"] = univ.ObjectIdentifier(ExtensionOID.EXTENDED_KEY_USAGE.dotted_string)
    eku["extnValue"] = x509.ExtendedKeyUsage([_EKUS[name] for name in ekus]).public_bytes()
    templates.append(eku)
    if profile.is_server:
        san = rfc9908.ExtensionTemplate()
        san["extnID"] = univ.ObjectIdentifier(ExtensionOID.SUBJECT_ALTERNATIVE_NAME.dotted_string)
        templates.append(san)  # no extnValue: the client fills in its names
    return templates


def csr_attributes(
    profile: ProfileConfig, *, chain: str | None, channel_binding: bool, common_name: bool
) -> bytes:
    """DER CsrAttrs (RFC 7030 §4.5.2) for a label."""
    attrs = rfc7030.CsrAttrs()
    if channel_binding:
        item = rfc7030.AttrOrOID()
        item["oid"] = univ.ObjectIdentifier(CHALLENGE_PASSWORD)
        attrs.append(item)

    template = rfc9908.CertificationRequestInfoTemplate()
    template["version"] = 0
    if common_name:
        cn = rfc9908.SingleAttributeTemplate()
        cn["type"] = univ.ObjectIdentifier(NameOID.COMMON_NAME.dotted_string)
        rdn = rfc9908.RelativeDistinguishedNameTemplate()
        rdn.append(cn)
        template["subject"]["rdnSequence"].append(rdn)
    algorithm = _key_algorithm(_allowed_key_types(profile, chain))
    if algorithm is not None:
        template["subjectPKInfo"]["algorithm"] = algorithm
    ext_request = rfc5280.Attribute()
    ext_request["type"] = rfc9908.id_aa_extensionReqTemplate
    ext_request["values"].append(encoder.encode(_extension_templates(profile)))
    template["attributes"].append(ext_request)

    attribute = rfc5280.Attribute()
    attribute["type"] = rfc9908.id_aa_certificationRequestInfoTemplate
    attribute["values"].append(encoder.encode(template))
    item = rfc7030.AttrOrOID()
    # AttrOrOID's Attribute is CMS's (attrType/attrValues): same DER as X.501's.
    cms_attribute = item["attribute"]
    cms_attribute["attrType"] = attribute["type"]
    cms_attribute["attrValues"].append(attribute["values"][0])
    attrs.append(item)
    der: bytes = encoder.encode(attrs)
    return der
