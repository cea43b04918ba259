"""What control refuses so one organization cannot act on another's names, hosts, tunnels
or agents: token host claims, reservations of names in use, member removal, operators'
suspensions and reassignments."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from tests.control.conftest import Api


def token_body(*hosts: str) -> dict[str, Any]:
    return {"hosts": list(hosts)}


async def reserve(api: Api, user: dict[str, Any], name: str) -> dict[str, Any]:
    made: dict[str, Any] = await api.call(
        "POST", "/v1/names", user["key"], status=201, json={"name": name}
    )
    return made


# -- 1: token host claims are checked against ownership at creation ------------------------


@pytest.mark.parametrize(
    ("host", "says"),
    [
        ("*.com", "not a domain of your organization"),
        ("shop.example.net", "not a domain of your organization"),
        ("*.tunnels.test", "uses itself"),
        ("edge.tunnels.test", "uses itself"),
        ("x.api.tunnels.test", "uses itself"),
        ("{other}.tunnels.test", "not a name your organization has reserved"),
        ("x.{other}.tunnels.test", "not a name your organization has reserved"),
        ("*.{other}.tunnels.test", "not a name your organization has reserved"),
    ],
)
async def test_a_token_may_not_claim_hosts_its_org_does_not_own(
    api: Api, host: str, says: str
) -> None:
    other = await api.signup()
    name = "n" + secrets.token_hex(4)
    await reserve(api, other, name)
    user = await api.signup()
    host = host.format(other=name)
    err = await api.call("POST", "/v1/tokens", user["key"], status=422, json=token_body(host))
    assert err["error"]["code"] == "not_owned"
    assert repr(host) in err["error"]["message"] and says in err["error"]["message"]
    assert (await api.call("GET", "/v1/tokens", user["key"]))["tokens"] == []


async def test_a_token_may_claim_its_orgs_names_and_domains(api: Api) -> None:
    user = await api.signup()
    name = "n" + secrets.token_hex(4)
    await reserve(api, user, name)
    domain = f"d{secrets.token_hex(4)}.example.org"
    for host in (domain, f"*.{domain}"):
        await api.call("POST", "/v1/domains", user["key"], status=201, json={"domain": host})
    hosts = [
        f"{name}.tunnels.test",
        f"x.{name}.tunnels.test",
        f"*.{name}.tunnels.test",
        domain,
        f"*.{domain}",
        f"a.{domain}",
    ]
    made = await api.call("POST", "/v1/tokens", user["key"], status=201, json=token_body(*hosts))
    assert made["claims"]["hosts"] == hosts


async def test_the_installations_names_cannot_be_reserved(api: Api) -> None:
    user = await api.signup()
    for name in ("edge", "api", "www", "console", "admin"):
        err = await api.call("POST", "/v1/names", user["key"], status=422, json={"name": name})
        assert err["error"]["code"] == "reserved"
        assert "uses itself" in err["error"]["message"]
