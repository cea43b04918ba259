"""Custom domain names as users type them: folded to one spelling, or refused with a reason."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from control.domain_names import DomainNameError, is_under, normalize_domain

LONGEST = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("app.example.com", "app.example.com"),
        ("  App.Example.COM.  ", "app.example.com"),
        ("my-app.example.co.uk", "my-app.example.co.uk"),
        ("123.example.com", "123.example.com"),
        ("Bücher.example", "xn--bcher-kva.example"),
        # A full-width dot, as typed on a CJK keyboard, is a dot.
        ("bücher\u3002example", "xn--bcher-kva.example"),
        # IDNA 2008 keeps ß (browsers send xn--strae-oqa), unlike IDNA 2003's "strasse".
        ("straße.de", "xn--strae-oqa.de"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
        (LONGEST, LONGEST),
    ],
)
def test_accepted_names_are_folded_to_one_spelling(typed: str, stored: str) -> None:
    assert normalize_domain(typed) == stored


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("", "enter a domain name"),
        ("   ", "enter a domain name"),
        ("localhost", "at least two labels"),
        ("com.", "at least two labels"),
        ("1.2.3.4", "is an IP address"),
        ("::1", "is an IP address"),
        ("[2001:db8::1]", "is an IP address"),
        ("https://app.example.com/", "leave out 'https://'"),
        ("app.example.com/path", "leave out 'https://' and any path"),
        ("app.example.com:8443", "without a port"),
        ("app..example.com", "empty label"),
        (".app.example.com", "empty label"),
        ("app.example.com..", "empty label"),
        ("-app.example.com", "hyphen"),
        ("app-.example.com", "hyphen"),
        ("my_app.example.com", "contains '_'"),
        ("my app.example.com", "contains ' '"),
        ("a" * 64 + ".example.com", "at most 63"),
        (LONGEST + "d", "at most 253"),
        ("app.example.123", "cannot be all digits"),
        ("999.999.999.999", "cannot be all digits"),
        ("xn--zz.example.com", "not valid punycode"),
        ("\N{THUMBS UP SIGN}.example", "not a valid internationalized label"),
        ("*.example.com", "is a wildcard"),
        ("app.*.example.com", "allowed only as the whole first label"),
    ],
)
def test_refusals_say_what_is_wrong(typed: str, reason: str) -> None:
    with pytest.raises(DomainNameError) as caught:
        normalize_domain(typed)
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)


def test_domain_name_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        normalize_domain("not a domain")


def test_wildcards_only_where_allowed() -> None:
    assert normalize_domain("*.Example.com.", allow_wildcard=True) == "*.example.com"
    assert normalize_domain("*.bücher.example", allow_wildcard=True) == "*.xn--bcher-kva.example"
    with pytest.raises(DomainNameError, match="at least two labels"):
        normalize_domain("*.com", allow_wildcard=True)
    with pytest.raises(DomainNameError, match="whole first label"):
        normalize_domain("*app.example.com", allow_wildcard=True)
    with pytest.raises(DomainNameError, match="whole first label"):
        normalize_domain("*.*.example.com", allow_wildcard=True)


def test_a_newline_in_the_input_does_not_break_the_message_onto_two_lines() -> None:
    with pytest.raises(DomainNameError) as caught:
        normalize_domain("app\nexample.com")
    assert "\n" not in str(caught.value)
    assert "'\\n'" in str(caught.value)


def test_long_input_is_cut_in_the_message() -> None:
    with pytest.raises(DomainNameError) as caught:
        normalize_domain("x_" * 500 + ".example.com")
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(
    ("domain", "base", "under"),
    [
        ("tunnels.burrow.example", "burrow.example", True),
        ("a.b.burrow.example", "burrow.example", True),
        ("burrow.example", "burrow.example", True),
        ("*.burrow.example", "burrow.example", True),
        ("App.Burrow.Example.", "burrow.example.", True),
        ("notburrow.example", "burrow.example", False),
        ("burrow.example.com", "burrow.example", False),
        ("example", "burrow.example", False),
        ("app.example.com", "", False),
    ],
)
def test_is_under_compares_whole_labels(domain: str, base: str, under: bool) -> None:
    assert is_under(domain, base) is under


# Pieces that make plausible and implausible names alike: letters in both cases, digits,
# hyphens, dots in several scripts, non-ASCII letters, and characters no host name may hold.
name_pieces = st.sampled_from(
    ["a", "Z", "0", "9", "-", ".", "\u3002", "\uff0e", "ü", "ß", "中", "é", "_", "*", " ", ":"]
)
plausible_names = st.lists(
    st.lists(name_pieces, min_size=0, max_size=8).map("".join), min_size=1, max_size=5
).map(".".join)


def _normalize_or_error(text: str, allow_wildcard: bool) -> str | None:
    try:
        return normalize_domain(text, allow_wildcard=allow_wildcard)
    except DomainNameError as exc:
        message = str(exc)
        assert message
        assert "\n" not in message and "\r" not in message
        return None


@given(text=st.text() | plausible_names, allow_wildcard=st.booleans())
@example(text="*.Bücher.example.", allow_wildcard=True)
@example(text="xn--a.example", allow_wildcard=False)
@example(text="a.b\x00.com", allow_wildcard=False)
def test_any_text_is_either_a_domain_or_a_domain_name_error(
    text: str, allow_wildcard: bool
) -> None:
    result = _normalize_or_error(text, allow_wildcard)
    if result is None:
        return
    assert result.isascii() and result == result.lower()
    assert len(result) <= 253
    assert not result.endswith(".")
    assert allow_wildcard or not result.startswith("*")
    assert normalize_domain(result, allow_wildcard=allow_wildcard) == result
