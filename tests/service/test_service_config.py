from __future__ import annotations

import logging
from pathlib import Path

import pytest
from service_fakes import MATARO, write_config

from civicchat.exceptions import ConfigError
from civicchat.service.config import interpolate, load_config, parse_config


def test_interpolation_with_defaults_and_missing_names():
    missing: list[tuple[str, str]] = []
    value = {"a": "x-${ONE}-${TWO:-two}", "b": ["${THREE}"], "c": 3}
    out = interpolate(value, {"ONE": "1"}, missing)
    assert out == {"a": "x-1-two", "b": [""], "c": 3}
    assert missing == [("b[0]", "THREE")]


def test_mataro_config_starts_with_no_environment_and_disables_accounts_with_a_warning(
    caplog: pytest.LogCaptureFixture,
):
    with caplog.at_level(logging.WARNING, logger="civicchat.service"):
        config = load_config(MATARO / "config.yaml", env={})
    assert [a.name for a in config.enabled_accounts] == ["mataro-web"]
    assert config.database_url == "sqlite+aiosqlite:///var/mataro.db"
    wa = next(a for a in config.accounts if a.name == "mataro-wa")
    assert "MATARO_WA_APP_SECRET" in wa.missing
    lines = [r.getMessage() for r in caplog.records]
    assert any("mataro-wa" in line and "MATARO_WA_ACCESS_TOKEN" in line for line in lines)
    assert any("mataro-tg" in line and "MATARO_TG_BOT_TOKEN" in line for line in lines)
    assert not any("placeholder" in line for line in lines)


def test_mataro_config_with_every_variable_enables_all_three_accounts():
    env = {
        "MATARO_WA_PHONE_NUMBER_ID": "123456789",
        "MATARO_WA_ACCESS_TOKEN": "t",
        "MATARO_WA_APP_SECRET": "s",
        "MATARO_WA_VERIFY_TOKEN": "v",
        "MATARO_TG_BOT_TOKEN": "1:abc",
        "MATARO_TG_SECRET_TOKEN": "sec",
        "CIVICCHAT_GRAPH_API_BASE": "http://127.0.0.1:9999",
    }
    config = load_config(MATARO / "config.yaml", env=env)
    assert len(config.enabled_accounts) == 3
    wa = config.enabled_accounts[0].whatsapp
    assert wa is not None
    assert wa.api_base_url == "http://127.0.0.1:9999"
    assert "app_secret" not in repr(wa)  # secrets stay out of repr
    assert "access_token" not in repr(wa)


def test_secrets_file_supplies_variables_and_environment_wins(tmp_path: Path):
    (tmp_path / "secrets.env").write_text("# comment\nTOKEN='from-file'\nOTHER=x\n")
    text = f"""
secrets_file: secrets.env
database_url: "${{OTHER}}.db"
accounts:
  - name: web
    channel: webchat
    catalog: {MATARO / "catalog.yaml"}
    office_hours: {MATARO / "hours.yaml"}
"""
    config = parse_config(text, base_dir=tmp_path, env={"OTHER": "env"})
    assert config.database_url == "env.db"
    config = parse_config(text, base_dir=tmp_path, env={})
    assert config.database_url == "x.db"


def test_missing_variable_outside_an_account_is_a_clear_error(tmp_path: Path):
    text = f"""
secret_key: "${{NO_SUCH_VAR}}"
accounts:
  - {{name: web, channel: webchat, catalog: {MATARO / "catalog.yaml"},
      office_hours: {MATARO / "hours.yaml"}}}
"""
    with pytest.raises(ConfigError, match="NO_SUCH_VAR"):
        parse_config(text, base_dir=tmp_path, env={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "mapping"),
        ("accounts: []", "non-empty"),
        ("accounts: [{name: 'Bad Name', channel: webchat, catalog: x, office_hours: y}]", "a-z"),
        ("accounts: [{name: w, channel: fax, catalog: x, office_hours: y}]", "channel"),
        (
            "accounts: [{name: w, channel: webchat, catalog: nope.yaml, office_hours: y}]",
            "not found",
        ),
        ("accounts: [{name: w, channel: whatsapp, catalog: x, office_hours: y}]", "whatsapp"),
        ("{{{", "YAML"),
    ],
)
def test_bad_configurations_are_refused_with_a_message(tmp_path: Path, text: str, message: str):
    (tmp_path / "x").write_text("")
    (tmp_path / "y").write_text("")
    with pytest.raises(ConfigError, match=message):
        parse_config(text, base_dir=tmp_path, env={})


def test_duplicate_account_names_refused(tmp_path: Path):
    path = write_config(tmp_path, provider_base="http://fake")
    text = path.read_text().replace("name: mataro-tg", "name: mataro-wa")
    with pytest.raises(ConfigError, match="two accounts"):
        parse_config(text, base_dir=tmp_path, env={})


def test_worker_counts_follow_the_database_unless_given():
    from civicchat.service.config import WorkersConfig

    assert WorkersConfig().for_database(postgres=False) == (1, 1)
    assert WorkersConfig().for_database(postgres=True) == (2, 4)
    assert WorkersConfig(inbox=6, outbox=3).for_database(postgres=True) == (6, 3)
    assert WorkersConfig(inbox=0).for_database(postgres=False) == (0, 1)
