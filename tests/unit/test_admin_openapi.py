"""The OpenAPI document and the browsable docs are built from the route registry."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from admin_api.app import RESOURCES, all_routes
from admin_api.context import Call
from admin_api.openapi import build_document, render_docs
from admin_api.rbac import PERMISSIONS
from admin_api.registry import Registry
from admin_api.schemas import Model, PageQuery


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, methods in document["paths"].items()
        for method, op in methods.items()
    ]


def test_every_route_is_documented_with_its_permission() -> None:
    routes = all_routes()
    document = build_document(routes)
    assert document["openapi"] == "3.1.0"
    operations = _operations(document)
    assert len(operations) == len(routes)
    ids = [op["operationId"] for _, _, op in operations]
    assert len(ids) == len(set(ids))
    for method, path, op in operations:
        assert path.startswith("/api/v1/")
        assert op["x-permission"] in PERMISSIONS
        assert {"400", "401", "403"} <= set(op["responses"]), (method, path)
        problem = op["responses"]["401"]["content"]["application/problem+json"]["schema"]
        assert problem == {"$ref": "#/components/schemas/ProblemModel"}
        if "{" in path:
            assert "404" in op["responses"]
        if "requestBody" in op:
            assert {"413", "415"} <= set(op["responses"])


def test_references_resolve() -> None:
    document = build_document(all_routes())
    schemas = document["components"]["schemas"]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                assert ref.startswith("#/components/schemas/")
                assert ref.rsplit("/", 1)[1] in schemas, ref
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)


def test_query_parameters_come_from_the_models() -> None:
    document = build_document(all_routes())
    params = {p["name"]: p for p in document["paths"]["/api/v1/certificates"]["get"]["parameters"]}
    assert {"name", "serial", "status", "expires_before", "limit", "cursor", "sort"} <= set(params)
    assert params["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 500}
    assert "null" not in str(params["status"]["schema"])
    assert params["status"]["schema"]["enum"] == ["valid", "revoked", "expired"]
    export = document["paths"]["/api/v1/certificates/export"]["get"]["responses"]["200"]
    assert set(export["content"]) == {"application/json", "text/csv"}


def test_a_new_resource_is_a_few_lines() -> None:
    widgets = Registry("Widgets")

    class WidgetQuery(PageQuery):
        colour: str | None = None

    class WidgetBody(Model):
        name: str

    class WidgetOut(BaseModel):
        name: str

    @widgets.route(
        "POST",
        "/widgets",
        permission="scans:manage",
        summary="Make a widget",
        query=WidgetQuery,
        body=WidgetBody,
        response=WidgetOut,
        status=201,
    )
    async def make_widget(call: Call[WidgetQuery, WidgetBody]) -> WidgetOut:
        return WidgetOut(name=call.body.name)

    document = build_document(all_routes((*RESOURCES, widgets)))
    op = document["paths"]["/api/v1/widgets"]["post"]
    assert op["operationId"] == "make_widget" and op["x-permission"] == "scans:manage"
    assert "WidgetBody" in document["components"]["schemas"]
    assert "201" in op["responses"]
    assert "/api/v1/widgets" in render_docs(document)


def test_unknown_permission_is_refused_at_declaration() -> None:
    with pytest.raises(ValueError, match="unknown permission"):
        Registry("X").route("GET", "/x", permission="everything", summary="x")


def test_docs_page_lists_operations_without_scripts() -> None:
    html = render_docs(build_document(all_routes()))
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")
    assert "/api/v1/certificates/{id}/revoke" in html and "certificates:revoke" in html
