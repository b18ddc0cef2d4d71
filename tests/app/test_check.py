"""`feikong check` says what is configured and what is wrong, in plain words, and fails on what
would be wrong in production; `serve` and `run` refuse a sandbox on a public https address."""

from __future__ import annotations

import pytest

from app.check import ERROR, check
from app.cli import main as feikong
from app.migrate import upgrade
from app.settings import use_settings
from standins.alipay_sandbox import generate_rsa_keypair


@pytest.fixture
def production(settings, tmp_path):
    """Settings as an operator would write them: real Alipay keys (mode 600), a long secret, a
    public https address, a migrated database."""
    private, public_pem = generate_rsa_keypair()
    keys = {}
    for name, text in (("app_private.pem", private), ("alipay_public.pem", public_pem)):
        keys[name] = tmp_path / name
        keys[name].write_text(text if isinstance(text, str) else text.decode())
        keys[name].chmod(0o600)
    url = f"sqlite:///{tmp_path / 'prod.db'}"
    upgrade(url)
    chosen = settings.model_copy(update={
        "database_url": url, "public_url": "https://power.example.cn",
        "secret_key": "s" * 48, "alipay_app_id": "2021000000000001",
        "alipay_app_private_key_file": keys["app_private.pem"],
        "alipay_public_key_file": keys["alipay_public.pem"]})
    use_settings(chosen)
    yield chosen, keys
    use_settings(settings)


def problems(settings) -> list[str]:
    return [f"{f.topic}: {f.text}" for f in check(settings) if f.level == ERROR]


def test_a_production_configuration_passes(production, capsys):
    chosen, _ = production
    assert problems(chosen) == []
    assert feikong(["check"]) == 0
    assert "nothing stops serving" in capsys.readouterr().out


def test_a_key_readable_by_others_is_a_problem(production):
    chosen, keys = production
    keys["app_private.pem"].chmod(0o644)
    assert any("readable by others" in p for p in problems(chosen))


def test_a_missing_key_file_and_the_default_secret(production):
    chosen, keys = production
    chosen = chosen.model_copy(update={"secret_key": "dev-only-change-me",
                                       "alipay_public_key_file": keys["app_private.pem"].parent
                                       / "nowhere.pem"})
    found = problems(chosen)
    assert any("does not exist" in p for p in found)
    assert any(p.startswith("secret key") for p in found)


def test_a_database_behind_the_code_is_a_problem(production, tmp_path):
    chosen, _ = production
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0011")
    assert any("feikong db upgrade" in p
               for p in problems(chosen.model_copy(update={"database_url": url})))


def test_the_sandbox_is_never_served_on_a_public_https_address(settings, capsys):
    public = settings.model_copy(update={"public_url": "https://power.example.cn"})
    use_settings(public)
    try:
        assert any(p.startswith("sandbox") for p in problems(public))
        assert feikong(["check"]) == 1
        for command in (["serve"], ["run"]):
            assert feikong(command) == 2
            assert "not serving" in capsys.readouterr().err
    finally:
        use_settings(settings)


def test_an_unreadable_agreement_is_an_error_and_a_proxy_without_trust_a_warning(production,
                                                                                 tmp_path):
    chosen, _ = production
    broken = tmp_path / "agreement.md"
    broken.write_text("---\nversion: a b\n---\n正文", "utf-8")
    found = {f.topic: f for f in check(chosen.model_copy(update={"agreement_file": broken}))}
    assert found["agreement"].level == ERROR and "cannot be read" in found["agreement"].text
    assert "FEIKONG_TRUSTED_PROXIES" in found["proxy"].text
    fine = {f.topic: f for f in check(chosen.model_copy(update={"trusted_proxies": "127.0.0.1"}))}
    assert fine["agreement"].level != ERROR and "proxy" not in fine
