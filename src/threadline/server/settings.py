"""The one place where Threadline's configuration is declared.

Every ``THREADLINE_*`` environment variable is a field of :class:`Settings`; its description is
the documentation (``docs/configuration.md`` lists them all and a test keeps the two in step).
Command-line flags override the environment; nothing else in the code reads ``os.environ``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path(os.path.expanduser("~")) / ".threadline"


class Settings(BaseSettings):
    """Threadline server configuration, read from ``THREADLINE_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="THREADLINE_", frozen=True, extra="ignore")

    home: Path = Field(
        default_factory=_default_home,
        description="Directory for the embedded SQLite database and other local state.",
    )
    database_url: str | None = Field(
        default=None,
        description="Database URL. Empty: SQLite at $THREADLINE_HOME/threadline.db. "
        "PostgreSQL: postgresql://user@host:port/db (plain libpq-style URLs are accepted).",
    )
    host: str = Field(default="127.0.0.1", description="Interface every port binds to.")
    port: int = Field(
        default=6006, ge=0, le=65535, description="Main HTTP port: UI, REST API and OTLP/HTTP. 0 disables it."
    )
    grpc_port: int = Field(default=4317, ge=0, le=65535, description="OTLP/gRPC port. 0 disables it.")
    otlp_http_port: int = Field(default=4318, ge=0, le=65535, description="Standard OTLP/HTTP port. 0 disables it.")
    log_level: str = Field(default="info", description="Log level: debug, info, warning or error.")

    # --- security (docs/security.md) ------------------------------------------------------------------
    auth: bool = Field(
        default=False,
        description="Require credentials (an API key as `Authorization: Bearer <key>`, or a login) on every "
        "route but /healthz. Off: every request acts as admin, so every port must bind a loopback address.",
    )
    insecure: bool = Field(
        default=False,
        description="Allow binding a non-loopback address with auth off (a warning is logged at every start). "
        "Anyone who can reach the port can then read, write and erase everything.",
    )
    admin_password: SecretStr | None = Field(
        default=None,
        description="On a start with no users yet, create the user `admin` (role admin) with this password.",
    )
    allowed_hosts: str | None = Field(
        default=None,
        description="Comma-separated host names the HTTP ports answer to (the `Host` header, port ignored); any "
        "other host gets 400 (DNS rebinding). Empty: localhost, 127.0.0.1, ::1 and the bind address. `*`: any.",
    )
    login_session_hours: float = Field(
        default=12.0, gt=0, description="How long a UI login lasts before the password is asked again."
    )
    login_max_failures: int = Field(
        default=5, ge=1,
        description="Failed logins in a row after which a user name (and the client address) must wait before "
        "trying again; the wait doubles with each further failure (from 1 s, at most 15 min).",
    )
    retention_days: float = Field(
        default=0, ge=0,
        description="Sessions (and traces without a session) whose last activity is older than this many days are "
        "purged in the background. 0: keep forever. A project's `retention_days` setting overrides it.",
    )
    retention_batch_sessions: int = Field(
        default=200, ge=1,
        description="Most sessions the retention purge removes in one transaction (small batches never stall ingest).",
    )
    tls_cert: Path | None = Field(
        default=None, description="PEM certificate (chain) served on every port (HTTP, OTLP/HTTP, OTLP/gRPC)."
    )
    tls_key: Path | None = Field(default=None, description="PEM private key of `THREADLINE_TLS_CERT`.")

    # --- ingest -------------------------------------------------------------------------------
    max_request_bytes: int = Field(
        default=32 * 1024 * 1024, gt=0,
        description="Largest OTLP request body accepted as sent (compressed), in bytes; larger gets 413.",
    )
    max_decompressed_bytes: int = Field(
        default=128 * 1024 * 1024, gt=0,
        description="Largest OTLP request body after gzip decompression, in bytes; larger gets 413.",
    )
    queue_max_spans: int = Field(
        default=200_000, gt=0,
        description="Spans handed to the writer process but not yet committed, over which new requests "
        "get 503 + Retry-After.",
    )
    commit_max_spans: int = Field(
        default=5_000, gt=0,
        description="Most spans the writer commits in one transaction (group commit); also bounds the "
        "writer's memory (a group's records are held until its commit).",
    )
    commit_linger_ms: float = Field(
        default=8.0, ge=0,
        description="How long the writer waits for requests still being decoded so they share one commit.",
    )
    decode_workers: int = Field(
        default=-1, ge=-1,
        description="Decode processes (inflate, decode, normalize, compress) beside the server process and the "
        "writer process. -1: one per CPU beyond the first (at least one), and two on two CPUs with SQLite; 0: "
        "decode in the server process.",
    )
    retry_after_seconds: int = Field(default=2, ge=1, description="Retry-After sent with 503 responses.")
    ingest_max_pending_requests: int = Field(
        default=32, ge=1,
        description="Export requests admitted at once over every transport (being read, waiting for or in a decode "
        "process, or waiting for their commit); more get 503 + Retry-After (gRPC UNAVAILABLE with retry info) at "
        "once. Also the size of the ingest thread pool, apart from the one of the UI and API.",
    )
    ingest_max_pending_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024,
        description="Request bodies (as sent) the server process and the decode processes hold at once, waiting "
        "for or in a decode process, in bytes (a body stops counting once it is decoded, before its commit); a "
        "request that would exceed it gets 503 + Retry-After before its body is read. Bounds the memory request "
        "bodies take, whatever the number of decode processes. A single body larger than this is admitted when "
        "no other waits.",
    )
    ingest_max_wait_seconds: float = Field(
        default=4.0, gt=0,
        description="Longest a request waits for a free decode process, and longest the spans already queued for the "
        "writer may take to commit (at the measured write rate), before new requests get 503 + Retry-After: "
        "well under the 10 s default timeout of OTLP exporters, so they retry instead of timing out.",
    )
    max_attribute_chars: int = Field(
        default=256 * 1024, ge=1024,
        description="Longest string attribute value kept; longer values are truncated with a marker.",
    )
    max_attributes_per_span: int = Field(
        default=2048, ge=16, description="Most attributes kept per span; the rest are dropped and counted."
    )
    max_text_chars: int = Field(
        default=32 * 1024, ge=256, description="Longest turn input/output text kept for display and search."
    )
    sqlite_synchronous: str = Field(
        default="FULL",
        description="SQLite durability. FULL (or EXTRA): the writer fsyncs the write-ahead log before a request is "
        "acknowledged, so acknowledged spans survive power loss. NORMAL: acknowledged once committed "
        "(they survive a crash of Threadline, not of the machine).",
    )

    # --- sessions and evals -----------------------------------------------------------------------
    session_idle_timeout_seconds: int = Field(
        default=1800, ge=0,
        description="Default idle time after which a session closes (per project overridable). 0: never.",
    )
    lifecycle_interval_seconds: float = Field(
        default=30.0, gt=0, description="How often the server closes idle sessions and runs online evals."
    )
    judge_base_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL of the LLM judge (e.g. http://127.0.0.1:8000/v1)."
    )
    judge_model: str = Field(default="gpt-4o-mini", description="Model name sent to the judge.")
    judge_api_key: str | None = Field(default=None, description="API key sent to the judge as a Bearer token.")
    judge_concurrency: int = Field(default=4, ge=1, description="Judge requests in flight at once.")
    judge_timeout_seconds: float = Field(default=60.0, gt=0, description="Timeout of one judge request.")
    judge_max_retries: int = Field(default=4, ge=0, description="Retries of a failed judge request (with backoff).")
    judge_retry_backoff_seconds: float = Field(
        default=1.0, ge=0, description="First wait before retrying a failed judge request; doubles on each retry."
    )
    judge_token_budget: int = Field(
        default=6000, ge=256, description="Token budget of a judge prompt; oldest turns are dropped first."
    )

    @field_validator("sqlite_synchronous")
    @classmethod
    def _check_synchronous(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"FULL", "NORMAL", "EXTRA"}:
            raise ValueError("THREADLINE_SQLITE_SYNCHRONOUS must be FULL, NORMAL or EXTRA")
        return upper

    @field_validator("tls_cert", "tls_key", mode="before")
    @classmethod
    def _empty_tls_path_is_unset(cls, value: Any) -> Any:
        """An empty ``THREADLINE_TLS_CERT`` / ``THREADLINE_TLS_KEY`` means unset (like the other paths)."""
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _check_tls_pair(self) -> Settings:
        """The certificate and its key come together (one without the other is a configuration error)."""
        if (self.tls_cert is None) != (self.tls_key is None):
            missing, given = ("THREADLINE_TLS_KEY", "THREADLINE_TLS_CERT") if self.tls_key is None else (
                "THREADLINE_TLS_CERT", "THREADLINE_TLS_KEY")
            raise ValueError(f"{given} is set but {missing} is not: TLS needs both THREADLINE_TLS_CERT (the PEM "
                             "certificate) and THREADLINE_TLS_KEY (its PEM private key); set both, or neither")
        return self

    @property
    def allowed_host_names(self) -> frozenset[str] | None:
        """Host names the HTTP ports answer to (lower case, no port); ``None`` means any host."""
        if self.allowed_hosts is not None and self.allowed_hosts.strip():
            names = {name.strip().lower().strip("[]") for name in self.allowed_hosts.split(",") if name.strip()}
            return None if "*" in names else frozenset(names)
        return frozenset({"localhost", "127.0.0.1", "::1", self.host.lower().strip("[]")})

    @property
    def resolved_database_url(self) -> str:
        """The database URL to connect to (SQLite under ``home`` unless ``database_url`` is set)."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'threadline.db'}"

    def effective_decode_workers(self) -> int:
        """Number of decode processes to start (resolves ``-1``).

        One per CPU beyond the first leaves a CPU to the server process and the writer. With
        SQLite on two CPUs that is one, and decoding, the longest stage of ingest (about twice the
        writer's CPU per span), is then the bottleneck while the other CPU idles part of the time:
        two decode processes ingest ~18 % more there. With PostgreSQL the database's own processes
        need that CPU (two were ~7 % slower with PostgreSQL on the same two CPUs; see
        docs/performance.md).
        """
        if self.decode_workers >= 0:
            return self.decode_workers
        cpus = os.cpu_count() or 1
        if cpus == 2 and self.resolved_database_url.startswith("sqlite"):
            return 2
        return max(1, cpus - 1)
