"""The OpenAPI 3.1 document and the browsable docs, both built from the route registry.

Nothing here is written by hand per route: paths, parameters, bodies and responses come from
each Route's declaration and its pydantic models (``models_json_schema``). OpenAPI 3.1 schemas
are JSON Schema 2020-12, which is what pydantic emits.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from admin_api.problems import PROBLEM_JSON, ProblemModel
from admin_api.rbac import PERMISSIONS
from admin_api.registry import Route
from admin_api.schemas import PATH_PATTERN

API_PREFIX = "/api/v1"
REF = "#/components/schemas/{model}"
JsonMode = Literal["validation", "serialization"]


def _strip_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent rather than null: drop the null branch of Optional."""
    variants = schema.get("anyOf")
    if isinstance(variants, list):
        rest = [v for v in variants if v != {"type": "null"}]
        if len(rest) == 1:
            merged = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
            merged.update(rest[0])
            return merged
    return {k: v for k, v in schema.items() if not (k == "default" and v is None)}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = _strip_null(dict(prop))
        description = prop.pop("description", None)
        prop.pop("title", None)
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        if description:
            param["description"] = description
        params.append(param)
    return params


def _problem_response(status: int) -> dict[str, Any]:
    return {
        "description": HTTPStatus(status).phrase,
        "content": {PROBLEM_JSON: {"schema": {"$ref": REF.format(model="ProblemModel")}}},
    }


def build_document(routes: Sequence[Route], *, version: str = "1") -> dict[str, Any]:
    models: list[tuple[type[BaseModel], JsonMode]] = [(ProblemModel, "serialization")]
    for route in routes:
        if route.body is not None:
            models.append((route.body, "validation"))
        if route.response is not None:
            models.append((route.response, "serialization"))
    keyed, defs = models_json_schema(models, ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {
            "operationId": route.operation_id,
            "summary": route.summary,
            "tags": [route.tag],
            "x-permission": route.permission,
            "description": (route.description + "\n\n" if route.description else "")
            + f"Needs permission `{route.permission}`.",
        }
        params = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": PATH_PATTERN},
            }
            for name in route.path_params
        ]
        if route.query is not None:
            params.extend(_query_parameters(route.query))
        if params:
            operation["parameters"] = params
        if route.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": keyed[(route.body, "validation")]}},
            }
        responses: dict[str, Any] = {}
        if route.response is None and not route.export:
            responses["204"] = {"description": "done"}
        elif route.export:
            assert route.response is not None
            item = keyed[(route.response, "serialization")]
            responses[str(route.status)] = {
                "description": "the rows, as a JSON array or CSV (?format=)",
                "content": {
                    "application/json": {"schema": {"type": "array", "items": item}},
                    "text/csv": {"schema": {"type": "string"}},
                },
            }
        else:
            assert route.response is not None
            responses[str(route.status)] = {
                "description": route.summary,
                "content": {
                    "application/json": {"schema": keyed[(route.response, "serialization")]}
                },
            }
        for status in route.errors:
            responses[str(status)] = _problem_response(status)
        operation["responses"] = responses
        paths.setdefault(API_PREFIX + route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "certyard admin API",
            "version": version,
            "description": "Inventory, findings, revocation, EAB keys, EST users and approvals, "
            "issuers and API tokens. Errors are RFC 9457 problem documents.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API token (certyard admin token create) or an OIDC JWT",
                }
            },
        },
        "tags": [{"name": tag} for tag in dict.fromkeys(r.tag for r in routes)],
        "x-permissions": PERMISSIONS,
    }


def render_docs(document: dict[str, Any]) -> str:
    """A self-contained HTML page listing every operation (no scripts, no CDN)."""
    esc = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{esc(document['info']['title'])}</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;"
        "color:#111;background:#fff}"
        "@media (prefers-color-scheme:dark){body{color:#eee;background:#111}a{color:#8cf}}"
        "code,.m{font-family:ui-monospace,monospace}.m{font-weight:bold;display:inline-block;"
        "min-width:4.5rem}table{border-collapse:collapse}td,th{padding:.2rem .6rem;"
        "text-align:left;border-bottom:1px solid #8884}section{margin:1.5rem 0}",
        "</style></head><body>",
        f"<h1>{esc(document['info']['title'])}</h1>",
        f"<p>{esc(document['info']['description'])}</p>",
        "<p>Machine-readable: <a href='/api/openapi.json'>/api/openapi.json</a> "
        "(OpenAPI 3.1). Authenticate with <code>Authorization: Bearer &lt;token&gt;</code>.</p>",
    ]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            by_tag.setdefault(op["tags"][0], []).append((method.upper(), path, op))
    parts.append("<nav><ul>")
    parts.extend(f"<li><a href='#{esc(t)}'>{esc(t)}</a></li>" for t in by_tag)
    parts.append("</ul></nav>")
    for tag, ops in by_tag.items():
        parts.append(f"<section id='{esc(tag)}'><h2>{esc(tag)}</h2>")
        for method, path, op in ops:
            parts.append(
                f"<h3 id='{esc(op['operationId'])}'><span class='m'>{esc(method)}</span> "
                f"<code>{esc(path)}</code></h3><p>{esc(op['summary'])} — permission "
                f"<code>{esc(op['x-permission'])}</code></p>"
            )
            params = op.get("parameters", [])
            if params:
                parts.append(
                    "<table><thead><tr><th scope='col'>parameter</th><th scope='col'>in</th>"
                    "<th scope='col'>schema</th><th scope='col'>description</th></tr></thead>"
                    "<tbody>"
                )
                for p in params:
                    parts.append(
                        f"<tr><td><code>{esc(p['name'])}</code></td><td>{esc(p['in'])}</td>"
                        f"<td><code>{esc(_short(p['schema']))}</code></td>"
                        f"<td>{esc(p.get('description', ''))}</td></tr>"
                    )
                parts.append("</tbody></table>")
            body = op.get("requestBody")
            if body:
                ref = body["content"]["application/json"]["schema"].get("$ref", "")
                parts.append(f"<p>Body: <code>{esc(ref.rsplit('/', 1)[-1])}</code> (JSON)</p>")
            codes = ", ".join(op["responses"])
            parts.append(f"<p>Responses: {esc(codes)}</p>")
        parts.append("</section>")
    parts.append("<section><h2>Schemas</h2><ul>")
    parts.extend(f"<li><code>{esc(name)}</code></li>" for name in document["components"]["schemas"])
    parts.append("</ul></section></body></html>")
    return "\n".join(parts)


def _short(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return " | ".join(str(v) for v in schema["enum"])
    kind = str(schema.get("type", "any"))
    if "format" in schema:
        kind += f" ({schema['format']})"
    if "maximum" in schema:
        kind += f" ≤ {schema['maximum']}"
    return kind
