"""Anonymous callers reach only D1's two endpoints, the health checks and the login page.

Every URL pattern of the project is turned into a concrete path and requested without any
credentials; anything else must refuse (401, 403, 404, 405) or send the caller to log in.
"""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern, RoutePattern

from tests.fixtures import spec_examples as spec

pytestmark = pytest.mark.django_db

PUBLIC = [
    re.compile(r"^/notifications/d1/v2/issuers/[^/]+/cards$"),
    re.compile(r"^/authz/d1/v1/oauth2/token$"),
    re.compile(r"^/healthz/?$"),
    re.compile(r"^/readyz/?$"),
    re.compile(r"^/admin/login/$"),
]
LOGIN = "/admin/login/"

_CONVERTER_SAMPLES = {"slug": "x", "uuid": "0" * 32}  # others: "1" (an id that may exist)


def _route(pattern: RoutePattern) -> str:
    def sample(match: re.Match) -> str:
        converter, name = match.group(1) or "str", match.group(2)
        return spec.ISSUER_ID if name == "issuer_id" else _CONVERTER_SAMPLES.get(converter, "1")

    return re.sub(r"<(?:(\w+):)?(\w+)>", sample, str(pattern))


def _regex(pattern: RegexPattern) -> str:
    text = str(pattern.regex.pattern).lstrip("^").rstrip("$").replace("\\Z", "")

    def sample(match: re.Match) -> str:
        body = match.group(2)
        if "|" in body:
            return body.split("|", 1)[0]
        return "1"

    text = re.sub(r"\(\?P<(\w+)>((?:[^()]|\([^()]*\))*)\)", sample, text)
    return text.replace("\\", "")


def concrete_paths(resolver=None, prefix: str = "/") -> list[str]:
    paths = []
    for entry in (resolver or get_resolver()).url_patterns:
        pattern = entry.pattern
        part = _route(pattern) if isinstance(pattern, RoutePattern) else _regex(pattern)
        if isinstance(entry, URLResolver):
            paths += concrete_paths(entry, prefix + part)
        elif isinstance(entry, URLPattern):
            paths.append(prefix + part)
    return sorted(set(paths))


def test_the_walk_covers_the_project():
    paths = concrete_paths()
    assert f"/notifications/d1/v2/issuers/{spec.ISSUER_ID}/cards" in paths
    assert "/api/v1/orders/" in paths and "/api/v1/orders/1/" in paths
    assert "/admin/tracking/cardorder/1/change/" in paths
    assert len(paths) > 40


@pytest.mark.parametrize("path", concrete_paths())
def test_anonymous_callers_reach_nothing_else(issuer, client, path):
    if any(p.match(path) for p in PUBLIC):
        return
    for method in ("get", "post"):
        response = getattr(client, method)(path, follow=True)
        final = response.request["PATH_INFO"]
        assert response.status_code in (401, 403, 404, 405) or final == LOGIN, (
            method,
            path,
            response.status_code,
            final,
        )
        assert response.status_code < 500
