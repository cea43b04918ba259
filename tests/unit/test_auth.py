"""Static agent tokens: the right account for a known token, a helpful refusal otherwise."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.link.auth import AuthError, StaticTokens

TOKENS = {"tok-acme-1": "acme", "tok-acme-2": "acme", "tok-globex": "globex"}


@pytest.mark.parametrize(("token", "account"), sorted(TOKENS.items()))
def test_configured_token_authenticates_as_its_account(token: str, account: str) -> None:
    identity = StaticTokens(TOKENS).authenticate(token)
    assert identity.account == account
    assert identity.protocols == frozenset({"http", "tcp", "tls"})
    assert identity.allowed_hosts == ()


@pytest.mark.parametrize("token", ["", "tok-acme", "tok-acme-1 ", "TOK-ACME-1", "tok-acme-10"])
def test_other_tokens_are_refused_with_what_to_do(token: str) -> None:
    with pytest.raises(AuthError) as info:
        StaticTokens(TOKENS).authenticate(token)
    message = str(info.value)
    assert "not accepted" in message
    assert "burrow config add-authtoken" in message


@given(st.text(max_size=40).filter(lambda t: t not in TOKENS))
def test_no_unknown_token_is_accepted(token: str) -> None:
    with pytest.raises(AuthError):
        StaticTokens(TOKENS).authenticate(token)


def test_an_empty_token_table_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="at least one agent token"):
        StaticTokens({})
