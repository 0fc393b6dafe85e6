"""Who may call what: tokens from /oauth/token, every route behind them, groups kept apart."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import jwt
import pytest
from conftest import token_for
from fastapi.routing import APIRoute
from starlette.routing import Route

from zeroserve.auth import ISSUER, signing_key
from zeroserve.core.store import Store
from zeroserve.gateway.app import PUBLIC, create_app
from zeroserve.node import Node


def routes(zeroserve) -> list[tuple[str, str]]:
    """(method, path) of every route the gateway serves, schema or not."""

    def walk(table: list, prefix: str) -> list[tuple[str, str]]:
        found = []
        for route in table:
            # FastAPI keeps included routers as branches of their own (with their prefix).
            if hasattr(route, "original_router"):
                found += walk(route.original_router.routes, prefix + route.include_context.prefix)
            elif isinstance(route, APIRoute | Route):
                found += [(m, prefix + route.path) for m in sorted(route.methods or ()) if m != "HEAD"]
            else:
                raise AssertionError(f"a route of a kind this test cannot check: {route!r}")
        return found

    return walk(create_app(zeroserve.platform).routes, "")


def concrete(path: str) -> str:
    # Any value will do for a path parameter: the token check comes before the lookup.
    return re.sub(r"\{[^}]+\}", "x1", path)


async def test_every_route_but_the_public_ones_answers_401_without_a_valid_token(zeroserve):
    table = routes(zeroserve)
    assert len(table) > 10
    expired = jwt.encode({"iss": ISSUER, "sub": "zs-x", "groups": ["*"], "exp": int(time.time()) - 10},
                         signing_key(zeroserve.settings), algorithm="HS256")
    forged = jwt.encode({"iss": ISSUER, "sub": "zs-x", "groups": ["*"], "exp": int(time.time()) + 600},
                        b"not the key" * 4, algorithm="HS256")
    unprotected = []
    async with httpx.AsyncClient(base_url=zeroserve.url, timeout=10) as http:
        for method, path in table:
            if path in PUBLIC:
                continue
            for headers in ({}, {"Authorization": f"Bearer {expired}"}, {"Authorization": f"Bearer {forged}"},
                            {"Authorization": "Basic eDp5"}):
                response = await http.request(method, concrete(path), headers=headers)
                if response.status_code != 401:
                    unprotected.append((method, path, headers, response.status_code))
                else:
                    assert response.json()["error"]["code"] == "Unauthorized"
                    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert unprotected == [], "routes that answered without a valid token"


async def test_the_public_routes_are_only_those_that_must_be(zeroserve):
    served = {path for _, path in routes(zeroserve)}
    # Every exemption names a route that exists: a renamed route cannot leave a stale hole.
    assert PUBLIC <= served, PUBLIC - served
    assert PUBLIC == {"/healthz", "/oauth/token", "/v2/webhooks/{name}", "/openapi.json", "/docs",
                      "/docs/oauth2-redirect", "/redoc",
                      # The web console's files, and its sign-in, which checks its own cookie
                      # (test_console_session.py).
                      "/console", "/console/{path:path}", "/console/session"}


async def test_the_api_describes_itself_without_a_token(zeroserve):
    async with httpx.AsyncClient(base_url=zeroserve.url, timeout=10) as http:
        described = await http.get("/openapi.json")
        docs = await http.get("/docs")
    assert described.status_code == 200, described.text
    paths = described.json()["paths"]
    assert {"/v2/lm/deployments", "/v2/lm/deployments/{deploymentId}/events", "/v2/events",
            "/oauth/token"} <= set(paths)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


async def test_a_client_gets_a_token_with_basic_auth_or_form_fields_and_it_opens_the_api(zeroserve):
    client, secret = await zeroserve.platform.auth.create_client(["team-a"])
    async with httpx.AsyncClient(base_url=zeroserve.url, timeout=10) as http:
        basic = await http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(client.id, secret))
        form = await http.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": client.id,
                                                     "client_secret": secret})
        assert basic.status_code == 200 and form.status_code == 200
        body = basic.json()
        assert body["token_type"] == "bearer" and body["expires_in"] == int(zeroserve.settings.token_ttl_s)
        assert basic.headers["Cache-Control"] == "no-store"
        claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        assert claims["groups"] == ["team-a"] and claims["sub"] == client.id
        health = await http.get("/v2/inference/deployments/nope/v2/health/ready",
                                headers={"Authorization": f"Bearer {body['access_token']}",
                                         "AI-Resource-Group": "team-a"})
        assert health.status_code == 404 and health.json()["error"]["code"] == "DeploymentNotFound"


@pytest.mark.parametrize("case", ["wrong secret", "unknown client", "no credentials", "wrong grant"])
async def test_a_bad_token_request_gets_the_oauth_error(zeroserve, case):
    client, secret = await zeroserve.platform.auth.create_client(["team-a"])
    data = {"grant_type": "password" if case == "wrong grant" else "client_credentials"}
    auth = {"wrong secret": (client.id, secret + "x"), "unknown client": ("zs-0000000000000000", secret),
            "no credentials": None, "wrong grant": (client.id, secret)}[case]
    async with httpx.AsyncClient(base_url=zeroserve.url, timeout=10) as http:
        response = await http.post("/oauth/token", data=data, auth=auth)
    expected = (400, "unsupported_grant_type") if case == "wrong grant" else (401, "invalid_client")
    assert (response.status_code, response.json()["error"]) == expected
    assert "access_token" not in response.json()


async def test_a_token_for_one_group_sees_nothing_of_another(zeroserve):
    token = await token_for(zeroserve, ["team-a"])
    async with httpx.AsyncClient(base_url=zeroserve.url, timeout=10,
                                 headers={"Authorization": f"Bearer {token}"}) as http:
        other = await http.get("/v2/inference/deployments/iris/v2/health/ready",
                               headers={"AI-Resource-Group": "team-b"})
        default = await http.get("/v2/inference/deployments/iris/v2/health/ready")
    assert other.status_code == 404 and other.json()["error"]["message"] == "resource group team-b not found"
    assert default.status_code == 404  # no header means "default", which this token does not cover either


async def test_client_secrets_are_stored_only_as_hashes(zeroserve):
    client, secret = await zeroserve.platform.auth.create_client(["team-a"], name="ci")
    entry = await zeroserve.platform.store.clients.kv.get(Store.GLOBAL + "." + client.id)
    assert secret.encode() not in entry.value
    assert b"scrypt$" in entry.value


async def test_a_client_needs_valid_groups(zeroserve):
    from zeroserve.auth import Unauthorized

    with pytest.raises(Unauthorized, match="invalid resource group"):
        await zeroserve.platform.auth.create_client(["Team A"])
    with pytest.raises(Unauthorized, match="at least one"):
        await zeroserve.platform.auth.create_client([])


async def test_zeroserve_up_leaves_operator_credentials_only_its_user_can_read(zeroserve):
    import json

    path = zeroserve.settings.data_dir / "credentials.json"
    assert path.stat().st_mode & 0o777 == 0o600
    known = json.loads(path.read_text())
    token, _ = await zeroserve.platform.auth.token(known["client_id"], known["client_secret"])
    assert zeroserve.platform.auth.verify(token).admin


async def ask_token(zeroserve, client_id: str, secret: str, source: str = "127.0.0.1") -> httpx.Response:
    """POST /oauth/token from the source address ``source`` (any of 127.0.0.0/8 reaches the gateway)."""
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(base_url=zeroserve.url, timeout=10, transport=transport) as http:
        return await http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))


async def test_failed_logins_are_answered_429_with_retry_after_and_other_clients_still_get_tokens(settings):
    settings.login_failure_limit = 3
    settings.login_failure_window_s = 2.0
    settings.login_slow_down_s = 0.05
    async with Node(settings) as zeroserve:
        victim, secret = await zeroserve.platform.auth.create_client(["team-a"])
        other, other_secret = await zeroserve.platform.auth.create_client(["team-b"])
        wrong = [await ask_token(zeroserve, victim.id, secret + "x") for _ in range(3)]
        assert [r.status_code for r in wrong] == [401, 401, 401]

        throttled = await ask_token(zeroserve, victim.id, secret + "x")
        assert throttled.status_code == 429, throttled.text
        assert throttled.json()["error"] == "slow_down" and "access_token" not in throttled.json()
        assert 1 <= int(throttled.headers["Retry-After"]) <= 2
        assert throttled.headers["Cache-Control"] == "no-store"
        # Throttled before its secret is checked: the right one is refused too, by client id and by address.
        assert (await ask_token(zeroserve, victim.id, secret)).status_code == 429
        assert (await ask_token(zeroserve, victim.id, secret, source="127.0.0.2")).status_code == 429
        assert (await ask_token(zeroserve, "zs-0123456789abcdef", "guess")).status_code == 429
        # Another client from another address is not held up meanwhile.
        meanwhile = await ask_token(zeroserve, other.id, other_secret, source="127.0.0.2")
        assert meanwhile.status_code == 200, meanwhile.text

        await asyncio.sleep(int(throttled.headers["Retry-After"]))
        after = await ask_token(zeroserve, victim.id, secret)
        assert after.status_code == 200, after.text
        assert after.json()["access_token"]


async def test_a_cached_token_is_refused_once_it_has_expired(settings):
    settings.token_ttl_s = 3
    async with Node(settings) as zeroserve:
        token = await token_for(zeroserve, ["*"])
        async with httpx.AsyncClient(base_url=zeroserve.url, timeout=10,
                                     headers={"Authorization": f"Bearer {token}"}) as http:
            assert (await http.get("/v2/lm/deployments")).status_code == 200
            assert (await http.get("/v2/lm/deployments")).status_code == 200  # verified once, then remembered
            expires_at = jwt.decode(token, options={"verify_signature": False})["exp"]
            await asyncio.sleep(max(0.0, expires_at - time.time()) + 0.1)
            expired = await http.get("/v2/lm/deployments")
        assert expired.status_code == 401
        assert "expired" in expired.json()["error"]["message"]
