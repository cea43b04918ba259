"""The dns-01 providers against a real DNS server: RFC 2136 updates signed with TSIG put the
TXT record in place and take it away, an unsigned or wrongly signed update is refused with
a line that says what to check, and a hook command gets its arguments and its failure
reported."""

from __future__ import annotations

import asyncio
import base64
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import dns.asyncresolver
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import pytest

from certs.dns01 import DnsError, HookCommand, Rfc2136, record_name
from tests.fixtures.dns_server import DnsServer

SECRET = base64.b64encode(b"burrow-dns01-test-tsig-secret-32b").decode()


class UpdatableDns(DnsServer):
    """The test DNS server, also taking RFC 2136 updates of TXT records under ``zone``,
    when they are signed with the one TSIG key it knows."""

    def __init__(self, zone: str) -> None:
        super().__init__()
        self.zone = dns.name.from_text(zone)
        self.keyring = dns.tsigkeyring.from_text({"burrow-acme.": SECRET})
        self.txt: dict[str, list[str]] = {}

    def reply(self, wire: bytes, transport: str) -> bytes | None:
        try:
            message = dns.message.from_wire(wire, keyring=self.keyring)
        except (dns.tsig.BadSignature, dns.tsig.BadKey, dns.tsig.PeerError):
            refused = dns.message.from_wire(wire, ignore_trailing=True, keyring=False)
            response = dns.message.make_response(refused)
            response.set_rcode(dns.rcode.NOTAUTH)
            return response.to_wire()
        except dns.exception.DNSException:
            return super().reply(wire, transport)
        if message.opcode() != dns.opcode.UPDATE:
            return super().reply(wire, transport)
        response = dns.message.make_response(message)
        if not message.had_tsig or message.question[0].name != self.zone:
            response.set_rcode(dns.rcode.REFUSED)
            return response.to_wire()
        # The update section is message.authority (RFC 2136 2.5): class NONE deletes.
        for rrset in message.authority:
            name = rrset.name.to_text(omit_final_dot=True)
            values = self.txt.setdefault(name, [])
            for rdata in rrset:
                value = b"".join(rdata.strings).decode()
                if rrset.deleting is not None:
                    values[:] = [v for v in values if v != value]
                else:
                    values.append(value)
            if values:
                self.set_txt(name, *values)
            else:
                self.remove(name)
        return response.to_wire(keyring=self.keyring) if message.had_tsig else response.to_wire()


@pytest.fixture
async def dns_server() -> AsyncIterator[UpdatableDns]:
    server = UpdatableDns("example.test.")
    await server.start()
    yield server
    await server.close()


async def txt(server: DnsServer, name: str) -> list[str]:
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = server.nameservers
    resolver.port = server.port
    resolver.cache = None
    try:
        answer = await resolver.resolve(name, "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    return sorted(b"".join(r.strings).decode() for r in answer)


async def test_rfc2136_places_and_removes_the_txt_record(dns_server: UpdatableDns) -> None:
    provider = Rfc2136(
        "127.0.0.1",
        "example.test.",
        port=dns_server.port,
        tsig_name="burrow-acme.",
        tsig_secret=SECRET,
    )
    record = record_name("*.example.test")
    assert record == "_acme-challenge.example.test."
    await asyncio.to_thread(provider.present, record, "token-digest-1")
    await asyncio.to_thread(provider.present, record, "token-digest-2")
    assert await txt(dns_server, record) == ["token-digest-1", "token-digest-2"]
    await asyncio.to_thread(provider.cleanup, record, "token-digest-1")
    assert await txt(dns_server, record) == ["token-digest-2"]


async def test_rfc2136_without_the_right_key_is_refused_clearly(dns_server: UpdatableDns) -> None:
    unsigned = Rfc2136("127.0.0.1", "example.test.", port=dns_server.port)
    with pytest.raises(DnsError, match="answered REFUSED; check the zone name and that the TSIG"):
        await asyncio.to_thread(unsigned.present, "_acme-challenge.example.test.", "x")
    wrong = Rfc2136(
        "127.0.0.1",
        "example.test.",
        port=dns_server.port,
        tsig_name="burrow-acme.",
        tsig_secret=base64.b64encode(b"another-secret-of-32-bytes-long!").decode(),
    )
    with pytest.raises(DnsError, match=r"TXT at 127\.0\.0\.1: .*check the TSIG key name"):
        await asyncio.to_thread(wrong.present, "_acme-challenge.example.test.", "x")
    assert await txt(dns_server, "_acme-challenge.example.test.") == []


def test_the_hook_command_gets_action_record_and_value(tmp_path: Path) -> None:
    seen = tmp_path / "seen.txt"
    script = tmp_path / "hook.py"
    script.write_text(
        "import sys\n"
        f"open({str(seen)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "sys.exit(3 if sys.argv[1] == 'cleanup' else 0)\n"
    )
    hook = HookCommand(f"{sys.executable} {script}")
    hook.present("_acme-challenge.example.test.", "v1")
    with pytest.raises(DnsError, match="cleanup exited 3"):
        hook.cleanup("_acme-challenge.example.test.", "v1")
    assert seen.read_text().splitlines() == [
        "present _acme-challenge.example.test. v1",
        "cleanup _acme-challenge.example.test. v1",
    ]
