"""Settings: TOML under the environment, secrets from the environment only, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, load_secrets, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "GLIMPSE_CONFIG",
        "GLIMPSE_MODEL",
        "OPENROUTER_BASE_URL",
        "GLIMPSE_IMAGE_HOSTS",
        "GLIMPSE_STORE_URL",
        "GLIMPSE_DISCORD__GUILD_IDS",
        "GLIMPSE_PROVIDER",
        "GLIMPSE_CHANNEL_PROMPTS",
    ):
        monkeypatch.delenv(name, raising=False)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "glimpse.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_need_no_file() -> None:
    settings = load_settings()
    assert settings.model == "meta-llama/llama-3.2-90b-vision-instruct"
    assert settings.base_url == "https://openrouter.ai/api/v1"
    assert settings.image_max_side == 1120
    assert settings.resolved_store_url().startswith("sqlite:///")


def test_environment_beats_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(
        tmp_path,
        'model = "file/model"\ntemperature = 0.2\n[channel_prompts]\nC1 = "Be a pirate."\n',
    )
    monkeypatch.setenv("GLIMPSE_MODEL", "env/model")
    settings = load_settings(path)
    assert settings.model == "env/model"
    assert settings.temperature == 0.2
    assert settings.system_prompt_for("C1") == "Be a pirate."
    assert settings.system_prompt_for("C2") == settings.system_prompt


def test_glimpse_config_variable_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GLIMPSE_CONFIG", str(_write(tmp_path, "max_output_tokens = 700\n")))
    assert load_settings().max_output_tokens == 700


def test_contract_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_BASE_URL", "http://127.0.0.1:9/api/v1")
    monkeypatch.setenv("GLIMPSE_IMAGE_HOSTS", "images.example.com, 10.0.0.5")
    monkeypatch.setenv("GLIMPSE_STORE_URL", "redis://127.0.0.1:6379/3")
    settings = load_settings()
    assert settings.base_url == "http://127.0.0.1:9/api/v1"
    assert settings.image_hosts == ["images.example.com", "10.0.0.5"]
    assert settings.resolved_store_url() == "redis://127.0.0.1:6379/3"


def test_a_wrong_value_names_the_setting_and_what_is_allowed(tmp_path: Path) -> None:
    path = _write(tmp_path, "image_max_side = 10\ntemperature = 'hot'\n")
    with pytest.raises(ConfigError) as error:
        load_settings(path)
    message = str(error.value)
    assert "image_max_side: Input should be greater than or equal to 64 (got 10)" in message
    assert "temperature" in message
    assert "Traceback" not in message


def test_secrets_in_the_file_are_refused_without_echoing_them(tmp_path: Path) -> None:
    path = _write(tmp_path, 'openrouter_api_key = "sk-or-v1-kept.out.of.files"\n')
    with pytest.raises(ConfigError) as error:
        load_settings(path)
    assert "environment only" in str(error.value)
    assert "kept.out.of.files" not in str(error.value)


def test_unknown_settings_and_broken_toml_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="colour: unknown setting"):
        load_settings(_write(tmp_path, 'colour = "blue"\n'))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(_write(tmp_path, "model = \n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_bad_store_url_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLIMPSE_STORE_URL", "postgres://x")
    with pytest.raises(ConfigError, match="store_url: .*sqlite:///"):
        load_settings()


def test_secrets_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-test")
    secrets = load_secrets()
    assert secrets.openrouter_api_key is not None
    assert secrets.openrouter_api_key.get_secret_value() == "sk-or-v1-test"
    assert "sk-or-v1-test" not in repr(secrets)


def test_example_config_is_valid() -> None:
    example = Path(__file__).parent.parent / "config" / "glimpse.example.toml"
    settings = load_settings(example)
    assert settings.model == "meta-llama/llama-3.2-90b-vision-instruct"


@pytest.mark.parametrize("value", ["1,2", " 1 , 2 ", '["1", "2"]'])
def test_nested_lists_take_commas_or_a_json_array(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("GLIMPSE_DISCORD__GUILD_IDS", value)
    assert load_settings().discord.guild_ids == ["1", "2"]


def test_dict_settings_take_a_json_object_or_say_so_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GLIMPSE_PROVIDER", '{"order": ["together"]}')
    assert load_settings().provider == {"order": ["together"]}
    monkeypatch.setenv("GLIMPSE_CHANNEL_PROMPTS", "C1=pirate")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "GLIMPSE_CHANNEL_PROMPTS must be a JSON object, e.g." in str(error.value)
    assert "\n" not in str(error.value)


def test_a_typo_gets_a_suggestion_and_only_real_secrets_the_secrets_sentence(
    tmp_path: Path,
) -> None:
    path = _write(
        tmp_path, 'max_output_token = 700\nDISCORD_TOKEN = "x"\n[discord]\nguild_id = ["1"]\n'
    )
    with pytest.raises(ConfigError) as error:
        load_settings(path)
    message = str(error.value)
    assert "max_output_token: unknown setting (did you mean max_output_tokens?)" in message
    assert "discord.guild_id: unknown setting (did you mean discord.guild_ids?)" in message
    assert "DISCORD_TOKEN: secrets are read from the environment only" in message
    assert message.count("environment only") == 1 and "\n" not in message


def test_channel_models_and_admins_from_the_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, 'admins = ["U1"]\n[channel_models]\nC1 = "acme/vision"\n')
    settings = load_settings(path)
    assert settings.model_for("C1") == "acme/vision"
    assert settings.model_for("C2") == settings.model
    assert settings.is_admin("slack", "U1") and not settings.is_admin("slack", "U2")
    monkeypatch.setenv("GLIMPSE_ADMINS", "U2, discord:42")
    monkeypatch.setenv("GLIMPSE_CHANNEL_MODELS", '{"C3": "acme/other"}')
    settings = load_settings(path)
    assert settings.admins == ["U2", "discord:42"]
    assert settings.is_admin("discord", "42") and not settings.is_admin("slack", "42")
    assert not settings.is_admin("slack", "")
    assert settings.model_for("C3") == "acme/other" and settings.model_for("C1") == settings.model


def test_channel_models_that_are_not_a_json_object_are_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GLIMPSE_CHANNEL_MODELS", "C1=acme/vision")
    with pytest.raises(ConfigError, match="GLIMPSE_CHANNEL_MODELS must be a JSON object"):
        load_settings()
