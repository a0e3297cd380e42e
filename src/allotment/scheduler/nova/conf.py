"""The operator's nova.conf, read with oslo.config as Nova reads it. Each user registers
the options it reads (oslo.config resolves them from the parsed files when asked)."""

from __future__ import annotations

from pathlib import Path

from oslo_config import cfg

from allotment import errors


def read_nova_conf(path: Path) -> cfg.ConfigOpts:
    """nova.conf parsed; ConfigError when it is missing or does not parse."""
    if not path.is_file():
        raise errors.ConfigError(f"nova.config_file: {path} does not exist")
    conf = cfg.ConfigOpts()
    try:
        conf(args=[], project="nova", default_config_files=[str(path)])
    except cfg.Error as exc:
        raise errors.ConfigError(f"nova.config_file: {path}: {exc}") from None
    return conf
