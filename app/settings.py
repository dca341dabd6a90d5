"""Runtime settings, read from `DIEMCAU_*` environment variables.

Secrets are never defaulted in code: when not given, one is generated on first run and kept under the
var directory with owner-only permissions, so restarts keep tokens valid.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SECRET_FILE_NAME = "secret_key"  # noqa: S105 - a file name


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DIEMCAU_", extra="ignore", frozen=True)

    var_dir: Path = Field(default=Path("var"), description="State directory: SQLite file, secrets.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; default sqlite+aiosqlite:///<var_dir>/diemcau.sqlite3. "
        "PostgreSQL: postgresql+asyncpg://user@host:5432/db",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_url: str | None = Field(
        default=None,
        description="Base URL that join links and printed URLs use; default http://host:port",
    )
    secret_key: SecretStr | None = Field(
        default=None, description="Signs access tokens; generated under var_dir when not set."
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins allowed for browsers (comma separated); the public URL is always allowed.",
    )
    access_token_ttl_s: int = Field(default=3600, ge=60, le=86400)
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    max_import_bytes: int = Field(default=20_000_000, ge=1024)
    max_import_rows: int = Field(default=20_000, ge=1)
    max_page_size: int = Field(default=1000, ge=10)
    login_max_failures: int = Field(default=10, ge=1, description="Per username, per window.")
    login_failure_window_s: int = Field(default=300, ge=1)
    password_min_length: int = Field(default=10, ge=8)
    ws_max_message_bytes: int = Field(
        default=65536, ge=1024, description="Largest WebSocket message; larger closes with 1009."
    )
    ws_hello_timeout_s: float = Field(default=10.0, gt=0, le=120)
    ws_queue_messages: int = Field(
        default=512, ge=8, description="Outgoing queue per connection; overflow closes with 4408."
    )
    ws_rate_per_s: float = Field(default=20.0, gt=0, description="Messages a client may send.")
    ws_rate_burst: int = Field(default=60, ge=1)
    ws_max_per_address: int = Field(
        default=4000, ge=1, description="Open connections from one IP address (offices share NATs)."
    )
    ws_max_per_account: int = Field(default=10, ge=1, description="Open staff connections each.")
    heartbeat_interval_s: float = Field(default=10.0, gt=0, le=300)
    heartbeat_timeout_s: float = Field(
        default=30.0, gt=0, le=900, description="No message for this long closes the connection."
    )
    resume_window_s: float = Field(
        default=60.0, ge=0, le=3600, description="A dropped point stays degraded this long."
    )
    resume_max_events: int = Field(
        default=2000,
        ge=0,
        description="Replay at most this many missed events (for a point: events for points), "
        "else a snapshot.",
    )
    degraded_rtt_ms: float = Field(default=400.0, gt=0)
    degraded_loss_pct: float = Field(default=5.0, ge=0, le=100)
    wall_delta_interval_s: float = Field(default=0.25, gt=0, le=10)
    event_poll_interval_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often the log is read for events written elsewhere.",
    )
    metrics_enabled: bool = True
    gc_freeze: bool = Field(
        default=True,
        description="Keep long-lived connections out of full garbage collections (gc.freeze).",
    )
    gc_refresh_interval_s: float = Field(
        default=600.0, ge=10, description="How often a full collection reclaims closed connections."
    )
    media_workers: int | None = Field(
        default=None,
        ge=0,
        le=64,
        description="Media forwarding processes; default one per core; 0 forwards on the API's "
        "own event loop (tests, tiny sessions).",
    )
    media_host_addresses: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Addresses media binds and offers as host candidates (comma separated); "
        "default every non-loopback interface.",
    )
    media_udp_port_min: int | None = Field(default=None, ge=1024, le=65535)
    media_udp_port_max: int | None = Field(default=None, ge=1024, le=65535)
    ice_servers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="STUN/TURN URLs given to every peer (comma separated), e.g. "
        "turn:turn.example.vn:3478?transport=udp. None by default: no public server is used.",
    )
    turn_secret: SecretStr | None = Field(
        default=None,
        description="Shared secret of the TURN server (coturn static-auth-secret): per-participant "
        "credentials are minted from it (TURN REST scheme).",
    )
    turn_credential_ttl_s: int = Field(
        default=12 * 3600, ge=60, le=7 * 86400, description="Longest life of a TURN credential."
    )
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=8)

    @field_validator("allowed_origins", "media_host_addresses", "ice_servers", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @model_validator(mode="after")
    def _check_port_range(self) -> Settings:
        low, high = self.media_udp_port_min, self.media_udp_port_max
        if (low is None) != (high is None):
            raise ValueError("set both media_udp_port_min and media_udp_port_max, or neither")
        if low is not None and high is not None and low > high:
            raise ValueError("media_udp_port_min is above media_udp_port_max")
        return self

    @property
    def effective_media_workers(self) -> int:
        if self.media_workers is not None:
            return self.media_workers
        return (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1
        )

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.var_dir / 'diemcau.sqlite3').as_posix()}"

    @property
    def effective_public_url(self) -> str:
        base = self.public_url or f"http://{self.host}:{self.port}"
        return base.rstrip("/")

    @property
    def effective_origins(self) -> list[str]:
        origins = [self.effective_public_url, *self.allowed_origins]
        return list(dict.fromkeys(o.rstrip("/") for o in origins))

    def with_secret(self) -> Settings:
        """Return settings whose secret key is set, generating and storing one if needed."""
        if self.secret_key is not None:
            return self
        return self.model_copy(
            update={"secret_key": SecretStr(load_or_create_secret(self.var_dir))}
        )

    def secret(self) -> str:
        if self.secret_key is None:
            raise RuntimeError("secret key not resolved: call Settings.with_secret() first")
        return self.secret_key.get_secret_value()


def load_or_create_secret(var_dir: Path) -> str:
    var_dir.mkdir(parents=True, exist_ok=True)
    path = var_dir / SECRET_FILE_NAME
    if path.exists():
        value = path.read_text(encoding="ascii").strip()
        if len(value) >= 32:
            return value
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # The mode above applies only on creation; a replaced file must not keep looser permissions.
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
    return value
