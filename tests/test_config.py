from __future__ import annotations

from pathlib import Path

import pytest

from dispatch.config import ConfigError, load_settings, normalise_database_url
from tests.support import make_settings, run_cli

STRONG_SECRET = "s" * 40
STRONG_PASSWORD = "a-long-admin-password"


def test_seed_000_defaults_keep_their_names_and_values() -> None:
    settings = load_settings(None)
    assert settings.app_name == "Dispatch"
    assert settings.api_v1_prefix == "/api/v1"
    assert settings.request_rate_per_minute == 60
    assert settings.scrape_interval_seconds == 1800
    assert settings.database_url == "sqlite:///./dispatch.db"
    assert settings.allowed_origins == ["*"]


def test_env_file_is_read(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text('APP_NAME=Elsewhere\nAPI_KEYS=one, two\nALLOWED_ORIGINS=["https://a.example"]\n')
    settings = load_settings(env)
    assert settings.app_name == "Elsewhere"
    assert settings.env_api_keys() == ["one", "two"]
    assert settings.allowed_origins == ["https://a.example"]


def test_invalid_value_names_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, request_rate_per_minute="lots", port=70000)
    message = str(caught.value)
    assert "REQUEST_RATE_PER_MINUTE" in message
    assert "PORT" in message


def test_scrape_interval_keeps_seed_minimum() -> None:
    with pytest.raises(ConfigError, match="SCRAPE_INTERVAL_SECONDS"):
        load_settings(None, scrape_interval_seconds=10)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///./dispatch.db", "sqlite+aiosqlite:///./dispatch.db"),
        ("postgresql://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgres://u:p@h/db", "postgresql+asyncpg://u:p@h/db"),
        ("postgresql://h/db?sslmode=require", "postgresql+asyncpg://h/db?ssl=require"),
    ],
)
def test_database_urls_are_normalised(url: str, expected: str) -> None:
    assert normalise_database_url(url) == expected


def test_unsupported_database_is_refused() -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load_settings(None, database_url="mysql://h/db")


def test_production_refuses_wildcard_cors_with_credentials() -> None:
    with pytest.raises(ConfigError, match="ALLOWED_ORIGINS"):
        load_settings(
            None,
            environment="production",
            secret_key=STRONG_SECRET,
            gateway_admin_password=STRONG_PASSWORD,
        )


def test_production_refuses_default_password_and_missing_secret() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environment="production", allowed_origins="https://ops.example")
    assert "GATEWAY_ADMIN_PASSWORD" in str(caught.value)
    assert "SECRET_KEY" in str(caught.value)


def test_production_accepts_safe_settings() -> None:
    settings = load_settings(
        None,
        environment="prod",
        allowed_origins="https://ops.example",
        secret_key=STRONG_SECRET,
        gateway_admin_password=STRONG_PASSWORD,
    )
    assert settings.environment == "production"
    assert settings.cors_credentials_effective


def test_wildcard_origin_never_sends_credentials_in_development() -> None:
    assert not make_settings(allowed_origins="*").cors_credentials_effective


def test_trusted_proxies_must_be_networks() -> None:
    with pytest.raises(ConfigError, match="TRUSTED_PROXIES"):
        load_settings(None, trusted_proxies="10.0.0.0/8,not-an-ip")


def test_cli_stops_with_a_message_naming_the_variable(tmp_path: Path) -> None:
    env = {"REQUEST_RATE_PER_MINUTE": "-3"}
    result = run_cli(["migrate", "--env-file", str(tmp_path / "none")], tmp_path, env)
    assert result.returncode == 2
    assert "REQUEST_RATE_PER_MINUTE" in result.stderr
    assert not (tmp_path / "dispatch.db").exists()
