"""The certs worker's settings come from flags or the config file's [control] table, with
the Let's Encrypt presets, as ``burrowd worker certs`` reads them."""

from __future__ import annotations

from pathlib import Path

from certs.config import PRESETS
from composition import cli
from control.cli import config_from_args

OPS = Path(__file__).resolve().parents[2] / "ops"


def test_the_example_config_file_configures_the_worker() -> None:
    args, _ = cli._parse(["--config", str(OPS / "burrowd.toml"), "worker", "certs"])
    certs = config_from_args(args).certs
    assert certs.acme is not None
    assert certs.acme.directory_url == PRESETS["letsencrypt"]
    assert certs.acme.email == "ops@example.com"
    assert certs.probe_addresses == ["127.0.0.1:443"]
    assert certs.challenges == ("http-01", "tls-alpn-01")


def test_flags_pick_the_staging_preset_a_challenge_and_probes(tmp_path: Path) -> None:
    args, _ = cli._parse(
        [
            "worker", "certs", "--acme-directory", "letsencrypt-staging",
            "--acme-challenge", "tls-alpn-01", "--cert-probe", "10.0.0.1:443",
            "--cert-probe", "10.0.0.2:443", "--acme-ca-bundle", "/etc/ssl/private-ca.pem",
        ]
    )  # fmt: skip
    certs = config_from_args(args).certs
    assert certs.acme is not None
    assert certs.acme.directory_url == PRESETS["letsencrypt-staging"]
    assert certs.acme.ca_bundle == "/etc/ssl/private-ca.pem"
    assert certs.challenges == ("tls-alpn-01",)
    assert certs.probe_addresses == ["10.0.0.1:443", "10.0.0.2:443"]


def test_no_directory_means_no_acme() -> None:
    args, _ = cli._parse(["worker", "certs"])
    assert config_from_args(args).certs.acme is None
