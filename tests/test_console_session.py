"""The web console's backend (gateway/console.py): its files under a strict Content-Security-Policy and out of
the API's description, and its session: the token of a client id and secret in an HttpOnly cookie that the
API takes only with ``X-Zeroserve-Console: 1``, never over an Authorization header, and throttled as
``POST /oauth/token`` is. The pages themselves are tested in a browser (tests/console/).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import httpx
import jwt

from zeroserve.auth import ISSUER, signing_key
from zeroserve.gateway.console import STATIC

CONSOLE = {"X-Zeroserve-Console": "1"}
# Chart.js 4.6.2's chart.umd.min.js as npm publishes it (make console-vendor checks the same).
CHART_JS_SHA256 = "3f288f4f26882c26b58931fb586a9b4f30370b5de38d69dc005b0bd05b08e113"


async def test_the_console_is_served_under_a_strict_policy_and_is_not_part_of_the_api_description(zeroserve):
    async with httpx.AsyncClient(base_url=zeroserve.url, timeout=10) as http:
        moved = await http.get("/console")
        index = await http.get("/console/")
        script = await http.get("/console/app.js")
        page = await http.get("/console/pages/deployments.js")
        style = await http.get("/console/style.css")
        chart = await http.get("/console/vendor/chart.umd.min.js")
        missing = await http.get("/console/nothing.js")
        outside = await http.get("/console/..%2F..%2Fsettings.py")
        described = (await http.get("/openapi.json")).json()
    assert moved.status_code == 308 and moved.headers["Location"] == "/console/"
    assert index.status_code == 200 and index.headers["Content-Type"] == "text/html; charset=utf-8"
    policy = index.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert index.headers["X-Frame-Options"] == "DENY" and index.headers["X-Content-Type-Options"] == "nosniff"
    for module in (script, page):
        assert module.status_code == 200 and module.headers["Content-Type"] == "text/javascript; charset=utf-8"
        assert module.headers["Content-Security-Policy"] == policy
    assert style.headers["Content-Type"] == "text/css; charset=utf-8"
    assert hashlib.sha256(chart.content).hexdigest() == CHART_JS_SHA256
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NotFound"
    assert outside.status_code == 404
    assert not [path for path in described["paths"] if path.startswith("/console")]


def test_no_page_of_the_console_has_an_inline_script_or_style():
    for html in Path(STATIC).rglob("*.html"):
        text = html.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), f"{html}: an inline script"
        assert not re.search(r"\son\w+=|<style|\sstyle=", text), f"{html}: an inline handler or style"
    for module in Path(STATIC).rglob("*.js"):
        if "vendor" not in module.parts:
            assert "innerHTML" not in module.read_text(), f"{module}: text goes into the page as text, not markup"


async def test_signing_in_keeps_the_token_in_a_cookie_the_api_takes_only_with_the_console_header(zeroserve):
    client, secret = await zeroserve.platform.auth.create_client(["team-a"])
    credentials = {"clientId": client.id, "clientSecret": secret}
    async with httpx.AsyncClient(base_url=zeroserve.url, timeout=10) as http:
        # A form of another origin can post text that parses as JSON, not application/json: no session from it.
        form = await http.post("/console/session", content=json.dumps(credentials),
                               headers={"Content-Type": "text/plain"})
        assert form.status_code == 415 and "set-cookie" not in form.headers
        wrong = await http.post("/console/session", json={**credentials, "clientSecret": "wrong"}, headers=CONSOLE)
        assert wrong.status_code == 401
        assert wrong.json() == {"error": {"code": "Unauthorized", "message": "wrong client id or secret"}}
        assert "set-cookie" not in wrong.headers
        signed_in = await http.post("/console/session", json=credentials, headers=CONSOLE)
        assert signed_in.status_code == 204, signed_in.text
        cookie = signed_in.headers["Set-Cookie"]
        assert cookie.startswith("zeroserve_console=")
        assert {"HttpOnly", "Path=/", "SameSite=strict", f"Max-Age={int(zeroserve.settings.token_ttl_s)}"} <= {
            part.strip() for part in cookie.split(";")}
        assert "Secure" not in cookie  # plain http here; over https it is Secure

        session = await http.get("/console/session")
        assert session.status_code == 200
        body = session.json()
        assert body["clientId"] == client.id and body["admin"] is False and body["groups"] == ["team-a"]
        assert body["expiresAt"].endswith("Z")
        group = {"AI-Resource-Group": "team-a"}
        # The cookie alone opens nothing: a cross-site request carries it, not the header.
        assert (await http.get("/v2/lm/deployments", headers=group)).status_code == 401
        assert (await http.get("/v2/lm/deployments", headers={**group, **CONSOLE})).status_code == 200
        inference = "/v2/inference/deployments/nothing/v1/models/nothing:predict"
        assert (await http.post(inference, headers=group, json={})).status_code == 401
        past_the_token = await http.post(inference, headers={**group, **CONSOLE}, json={})
        assert past_the_token.json()["error"]["code"] == "DeploymentNotFound"
        # An Authorization header wins over the cookie, on both paths.
        bad = {**group, **CONSOLE, "Authorization": "Bearer not-a-token"}
        assert (await http.get("/v2/lm/deployments", headers=bad)).status_code == 401
        assert (await http.post(inference, headers=bad, json={})).status_code == 401
        # The cookie's token has the client's groups, no more.
        other_group = await http.get("/v2/lm/deployments", headers={**CONSOLE, "AI-Resource-Group": "team-b"})
        assert other_group.status_code == 404

        signed_out = await http.delete("/console/session")
        assert signed_out.status_code == 204 and 'zeroserve_console=""' in signed_out.headers["Set-Cookie"]
        assert (await http.get("/console/session")).status_code == 401


async def test_an_expired_console_session_is_refused_as_an_expired_token_is(zeroserve):
    lapsed = jwt.encode({"iss": ISSUER, "sub": "zs-0123456789abcdef", "groups": ["*"], "exp": int(time.time()) - 1},
                        signing_key(zeroserve.settings), algorithm="HS256")
    async with httpx.AsyncClient(base_url=zeroserve.url, timeout=10, cookies={"zeroserve_console": lapsed}) as http:
        session = await http.get("/console/session")
        listing = await http.get("/v2/lm/deployments", headers=CONSOLE)
    for answer in (session, listing):
        assert answer.status_code == 401
        assert "expired" in answer.json()["error"]["message"]


async def test_failed_sign_ins_are_throttled_with_the_token_endpoint(settings):
    from zeroserve.node import Node

    settings.login_failure_limit = 2
    settings.login_slow_down_s = 0.05
    async with Node(settings) as zeroserve:
        client, secret = await zeroserve.platform.auth.create_client(["*"])
        async with httpx.AsyncClient(base_url=zeroserve.url, timeout=10, headers=CONSOLE) as http:
            wrong = {"clientId": client.id, "clientSecret": secret + "x"}
            assert [(await http.post("/console/session", json=wrong)).status_code for _ in range(2)] == [401, 401]
            held = await http.post("/console/session", json={**wrong, "clientSecret": secret})
            assert held.status_code == 429 and int(held.headers["Retry-After"]) >= 1
            assert held.json()["error"]["code"] == "TooManyFailedLogins"
            token = await http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(client.id, secret))
            assert token.status_code == 429  # one throttle for both ways in
