"""The one typed source of configuration: a TOML file, overridden by ``ALLOTMENT_*`` environment
variables, overridden by command-line flags. Validated once at start-up.

Environment variables name a section and a key joined by a double underscore:
``ALLOTMENT_DATABASE__URL=postgresql+psycopg://...``, ``ALLOTMENT_SERVER__PORT=9000``.
Values are parsed as TOML scalars or arrays when they look like them (``true``, ``3``,
``["a", "b"]``) and as plain strings otherwise.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from allotment.errors import ConfigError

ENV_PREFIX = "ALLOTMENT_"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ServerConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(8778, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    auth: Literal["token", "noauth"] = "token"
    # Where the default SQLite database and the bootstrap admin token live.
    state_dir: Path = Path("var")
    # Placement answers at the root path; the scheduler API lives under this prefix.
    scheduler_prefix: str = "/scheduler/v1"


class DatabaseConfig(Section):
    # Empty means an SQLite file in the state directory.
    url: str = ""
    pool_size: int = Field(10, ge=1)
    # Server-side retries of a write transaction that lost a race (deadlock, generation).
    write_retries: int = Field(10, ge=0, le=100)
    # SQLite only: FULL makes every committed write survive a power cut; NORMAL is faster.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    echo: bool = False


class PlacementConfig(Section):
    # How often each process polls the change sequence for other processes' writes (seconds).
    index_poll_interval: float = Field(1.0, gt=0, le=60)
    # Keep change-log rows this long; a process further behind rebuilds its index.
    change_log_retention_s: float = Field(3600.0, gt=0)
    randomize_allocation_candidates: bool = False
    # "distinct": candidates that differ only by which of several interchangeable providers
    # (identical leaves under one parent) serves which of several identical request groups
    # are returned once. "all": every such permutation, as upstream Placement does.
    allocation_candidate_permutations: Literal["distinct", "all"] = "distinct"
    # Upper bound on allocation requests computed when the caller gives no limit (0 = none).
    max_allocation_candidates: int = Field(0, ge=0)


class CorsConfig(Section):
    allowed_origin: list[str] = Field(default_factory=list)
    allow_headers: list[str] = Field(default_factory=list)
    expose_headers: list[str] = Field(default_factory=list)


class PluginsConfig(Section):
    # Entry-point names an operator explicitly allows beyond the built-in ones.
    allowed: list[str] = Field(default_factory=list)


class LoggingConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    access_log: bool = False

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class Settings(Section):
    server: ServerConfig = Field(default_factory=ServerConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    placement: PlacementConfig = Field(default_factory=PlacementConfig)
    cors: CorsConfig = Field(default_factory=CorsConfig)
    plugins: PluginsConfig = Field(default_factory=PluginsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{self.server.state_dir / 'allotment.sqlite'}"


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        out.setdefault(section, {})[key] = _parse_env_value(raw)
    return out


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(f"  {where}: unknown option")
        else:
            lines.append(f"  {where}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def load_settings(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build settings from file, environment and explicit overrides, in rising priority."""
    data: dict[str, Any] = {}
    sources = ["defaults"]
    if config_file is not None:
        path = Path(config_file)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"configuration file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None
        sources.append(str(path))
    env = _env_overrides(os.environ if environ is None else environ)
    if env:
        data = _merge(data, env)
        sources.append("environment")
    if overrides:
        data = _merge(data, {k: dict(v) for k, v in overrides.items() if v})
        sources.append("command line")
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, " + ".join(sources))) from None
