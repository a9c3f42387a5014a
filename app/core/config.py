"""Settings: one `Settings` class, one module-level `settings`, env prefix TASKBENCH_."""

from __future__ import annotations

import json
import os
import re
import secrets as _secrets
import socket
import time
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PLACEHOLDER_SECRET = "changethis"
ORIGIN_RE = re.compile(r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:]+\](:[0-9]{1,5})?")


def shipped_dir(name: str) -> Path:
    """A directory shipped inside the `app` package (templates, migrations), found through
    importlib.resources so an installed wheel works from any folder."""
    found = files("app") / name
    if not isinstance(found, Path) or not found.is_dir():
        raise RuntimeError(f"the app package has no {name}/ directory ({found}): broken install")
    return found


TEMPLATES_DIR = shipped_dir("templates")
MIGRATIONS_DIR = shipped_dir("migrations")


DEFAULT_VENV_PACKAGES = ("requests", "beautifulsoup4", "pytest")


class Settings(BaseSettings):
    """Everything configurable, each field documented by its description."""

    model_config = SettingsConfigDict(
        env_prefix="TASKBENCH_", env_file=".env", extra="ignore", populate_by_name=True
    )

    environment: str = Field("development", description="development, test or production")
    host: str = Field("127.0.0.1", description="Where `taskbench up`/`api` listen")
    port: int = Field(8000, description="Port for `taskbench up`/`api`")
    public_url: str = Field(
        "", description="Base URL people open Taskbench at (links in emails, PDF reports, PRs); "
        "default the URL the API serves on (host and port)"
    )
    var_dir: Path = Field(
        default_factory=lambda: Path.cwd() / "var",
        description="Run-time state for the embedded mode; default ./var",
    )
    database_url: str = Field("", description="SQLAlchemy async URL; default SQLite in var/")
    broker_url: str = Field("", description="Celery broker; default an embedded SQLite broker")
    broker_polling_interval: float = Field(0.05, description="Seconds between embedded polls")
    redis_url: str = Field("", description="Redis for pub/sub and caches (from broker if redis)")
    workspaces_dir: Path = Field(
        default_factory=lambda: Path.cwd() / "workspaces",
        description="Per-task workspaces; default ./workspaces",
    )
    admin_api_key: str = Field("", description="Bootstraps an admin user with this key")
    rate_limit_per_minute: int = Field(600, description="Requests per API key per minute")
    max_body_bytes: int = Field(1024 * 1024, description="Largest JSON body accepted")
    ap_key_in_url: bool = Field(
        False, description="Accept /ap/k/{api_key}/v1/… for Agent Protocol clients that cannot "
        "send an Authorization header (the key travels in the URL: trusted networks only)")
    max_upload_bytes: int = Field(10 * 1024 * 1024, description="Largest uploaded file")

    llm_base_url: str = Field("https://openrouter.ai/api/v1", description="OpenAI-compatible URL")
    llm_api_key: str = Field(
        "",
        validation_alias=AliasChoices(
            "TASKBENCH_LLM_API_KEY", "OPENROUTER_API_KEY", "OPENAI_API_KEY"
        ),
        description="Key for the LLM endpoint",
    )
    llm_model_map: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Model names the provider takes instead of the agents' (OpenRouter) ones: "
        'JSON {"openai/gpt-4o-mini": "llama3.1:8b"} or `a=b,c=d`; `*` maps every other name',
    )
    llm_timeout_s: float = Field(120.0, description="Timeout of one LLM request")
    llm_max_retries: int = Field(3, description="Retries of one model before the fallback")
    venv_default_packages: list[str] = Field(
        default_factory=lambda: list(DEFAULT_VENV_PACKAGES),
        description="Packages every fresh task venv can import at once, unless its agent sets "
        "config.venv_packages: fetched once into the local wheel cache (var/wheels), installed "
        "once per worker host into a shared layer (var/venv-base) that every jail sees "
        "read-only; JSON list, `[]` for bare venvs")
    llm_prompt_cache: str = Field(
        "auto", pattern="^(auto|on|off)$",
        description="Prompt caching: `auto` marks cache breakpoints (cache_control) for "
        "Anthropic models (OpenAI-style providers cache a repeated prefix by themselves); `on` "
        "marks them for every model; `off` never")
    llm_retry_base_s: float = Field(0.5, description="First backoff; doubles per retry")

    default_max_steps: int = Field(50, description="Default budget: LLM calls per task")
    default_max_tokens: int = Field(400_000, description="Default budget: tokens per task")
    default_max_cost_usd: float = Field(2.0, description="Default budget: dollars per task")
    default_timeout_s: int = Field(1800, description="Default budget: wall seconds per task")

    lease_seconds: float = Field(
        6.0, description="A worker's lease on a task, renewed every 0.5 s; a task whose worker "
        "died is re-queued once it expires (so it runs again within ~8 s)")
    sweep_interval_s: float = Field(1.0, description="How often pending/lost tasks are swept")
    worker_heartbeat_s: float = Field(5.0, description="How often a worker heartbeats")
    max_deliveries: int = Field(3, description="Runs of one task before it is failed")
    loop_stall_s: float = Field(
        2.0, description="A worker logs its event loop thread's stack when the loop has not run "
        "for this many seconds (a synchronous call holding it); 0 turns the watchdog off")
    requeue_unstarted_s: float = Field(
        60.0, description="Re-queue an assigned task no worker started after this long"
    )
    input_timeout_s: float = Field(
        3600.0, description="How long a task waits for an answer to its question before failing"
    )
    visibility_timeout_s: int = Field(30, description="Redis: unacked message redelivery")

    sandbox: str = Field("", description="bwrap or none; default bwrap when it works")
    eager_reports: bool = Field(
        False, description="Render every ended task's PDF at once; false (the default): when "
        "an email or a PR needs it, else on its first download (then kept)"
    )
    smtp_url: str = Field("", description="smtp:// or smtps:// URL; empty writes .eml files")
    email_from: str = Field("taskbench@localhost", description="Sender of notifications")
    github_token: str = Field("", description="Token for GitHub API and git pushes")
    github_api_url: str = Field("https://api.github.com", description="GitHub API base URL")
    search_backend: str = Field("duckduckgo", description="duckduckgo or searxng")
    searxng_url: str = Field("", description="SearxNG base URL")
    fetch_allow_hosts: list[str] = Field(
        default_factory=list, description="Hosts fetch_url may reach even if private (tests)"
    )
    log_json: bool | None = Field(None, description="JSON logs; default when not a terminal")
    sandbox_uid: int = Field(65534, description="Host uid jailed commands run as (never 0)")
    sandbox_gid: int = Field(65534, description="Host gid jailed commands run as (never 0)")
    sandbox_uid_base: int = Field(
        200000, description="First of the uids given one per running task (gid = uid)"
    )
    sandbox_uid_count: int = Field(
        1000, description="How many per-task uids; 0 runs every task as sandbox_uid"
    )
    sandbox_uid_lock_dir: Path = Field(
        Path("/run/taskbench/uids"), description="Host-wide lock files of the per-task uids"
    )
    sandbox_cgroup: str = Field(
        "auto", description="auto: a cgroup per command where writable (v2, else v1); off"
    )
    bwrap_path: str = Field("", description="bubblewrap executable; default bwrap on PATH")
    pip_allow: list[str] = Field(
        default_factory=list, description="If set, the only packages pip_install may install"
    )
    pip_deny: list[str] = Field(default_factory=list, description="Packages pip_install refuses")
    pip_timeout_s: float = Field(300.0, description="Timeout of one pip_install")
    pip_allow_sdist: bool = Field(
        False, description="Let pip_install build sdists (runs package code on the host)"
    )
    search_per_minute: int = Field(10, description="web_search calls per task per minute")
    search_cache_s: int = Field(86400, description="How long a search result is cached")
    fetch_max_bytes: int = Field(2 * 1024 * 1024, description="Largest page fetch_url reads")
    fetch_timeout_s: float = Field(20.0, description="Timeout of one fetch_url request")
    outbox_retry_base_s: float = Field(15.0, description="Outbox: first retry delay; doubles")
    outbox_retry_max_s: float = Field(300.0, description="Outbox: longest delay between tries")
    outbox_max_attempts: int = Field(20, description="Outbox: tries before a message fails")
    outbox_lease_s: float = Field(
        8.0, description="Outbox: a sender's claim on a message (a killed sender's messages "
        "are taken over after it)")
    outbox_probe_s: float = Field(
        2.0, description="Outbox: while the mail server cannot be reached, how often it is "
        "tried again (such tries do not count as a message's attempts)")
    email_max_attachment_bytes: int = Field(5_000_000, description="Larger files are linked")
    email_allow_domains: list[str] = Field(
        default_factory=list, description="Domains send_email may reach besides notify.email"
    )
    email_agent_max_per_hour: int = Field(5, description="send_email calls per task per hour")
    git_allow_file_remotes: bool = Field(
        False, description="Let host git use file:// remotes (tests with a local bare repo)"
    )
    secret_key: str = Field(
        PLACEHOLDER_SECRET, description="Signs access tokens and dashboard sessions (HS256)"
    )
    token_ttl_s: int = Field(900, description="Lifetime of a token from POST /auth/token")
    session_ttl_s: int = Field(12 * 3600, description="Lifetime of a dashboard session")
    stream_queue_size: int = Field(1000, description="Events buffered per live-stream client")
    stream_poll_s: float = Field(0.2, description="Event-table poll interval without Redis")
    otel_endpoint: str = Field("", description="OTLP/HTTP endpoint; empty disables tracing")
    webhook_secret: str = Field(
        "", description="HMAC-SHA256 key signing webhooks (needed for notify.webhook)"
    )
    webhook_url: str = Field(
        "", description="Server-wide webhook: told of every task's questions and ends"
    )
    webhook_allow_hosts: list[str] = Field(
        default_factory=list, description="Hosts webhooks may reach even if private (tests)"
    )
    webhook_timeout_s: float = Field(10.0, description="Timeout of one webhook delivery")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins a browser front end may call the API from (comma-separated, e.g. "
        "https://app.example.com); off when empty; `*` alone allows any origin without cookies",
    )

    @model_validator(mode="after")
    def _real_secret(self) -> Settings:
        if self.environment not in ("development", "test") and (
            self.secret_key == PLACEHOLDER_SECRET or len(self.secret_key) < 32
        ):
            raise ValueError(
                "TASKBENCH_SECRET_KEY must be set to a random value of 32+ characters "
                f"outside development (environment={self.environment})"
            )
        return self

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, v: Any) -> Any:
        items = [o.strip() for o in v.split(",")] if isinstance(v, str) else list(v or [])
        origins = [o.rstrip("/") for o in items if o]
        if "*" in origins and len(origins) > 1:
            raise ValueError("`*` must stand alone (it allows any origin, without cookies)")
        for origin in origins:
            if origin != "*" and not ORIGIN_RE.fullmatch(origin):
                raise ValueError(f"not an origin (scheme://host[:port], no path): {origin!r}")
        return origins

    @field_validator("llm_model_map", mode="before")
    @classmethod
    def _parse_model_map(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        if v.strip().startswith("{"):
            return json.loads(v)
        pairs = [p for p in (part.strip() for part in v.split(",")) if p]
        if any("=" not in p for p in pairs):
            raise ValueError("use JSON or name=provider_name pairs separated by commas")
        return {k.strip(): val.strip() for k, val in (p.split("=", 1) for p in pairs)}

    def provider_model(self, model: str) -> str:
        """The name the configured provider takes for an agent's `model`."""
        return self.llm_model_map.get(model) or self.llm_model_map.get("*") or model

    @field_validator("database_url", mode="after")
    @classmethod
    def _normalise_db(cls, v: str) -> str:
        if v.startswith("postgresql://") or v.startswith("postgres://"):
            return "postgresql+asyncpg://" + v.split("://", 1)[1]
        if v.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + v.split(":///", 1)[1]
        return v

    @property
    def base_url(self) -> str:
        """The absolute base of links sent to people: public_url, else where the API listens."""
        host = "localhost" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        return (self.public_url or f"http://{host}:{self.port}").rstrip("/")

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.var_dir / 'taskbench.db'}"

    @property
    def site_url(self) -> str:
        """Where people reach Taskbench: TASKBENCH_PUBLIC_URL, else where the API listens (a
        wildcard address is replaced by this machine's name)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = socket.gethostname() if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    @property
    def celery_broker_url(self) -> str:
        return self.broker_url or f"tbsqla+sqlite:///{self.var_dir / 'broker.db'}"

    @property
    def is_embedded_broker(self) -> bool:
        return not self.celery_broker_url.startswith(("redis://", "rediss://", "amqp://"))

    @property
    def pubsub_redis_url(self) -> str:
        if self.redis_url:
            return self.redis_url
        if self.celery_broker_url.startswith(("redis://", "rediss://")):
            return self.celery_broker_url
        return ""

    def signing_key(self) -> str:
        """The key that signs tokens and sessions: TASKBENCH_SECRET_KEY, or (development and
        tests, where it may be left unset) a random key made on first use and kept, 0600, in
        `var_dir/secret_key`, so every process of this installation shares it and nobody can
        sign with the public placeholder. Production refuses to start without a real one."""
        if self.secret_key != PLACEHOLDER_SECRET:
            return self.secret_key
        return kept_secret(self.var_dir / "secret_key")

    def secrets(self) -> list[str]:
        """Values that must never reach a workspace, an event, a log line or a prompt.

        Redaction asks for them for every event (~5 times a step), so the answer is kept
        until the provider-key variables change. Until the signing key is known (a real one
        set, or the kept one read), whether its file has appeared (the API makes it) is
        looked at again at most every KEY_FILE_RECHECK_S, not with a stat per event."""
        env = (os.environ.get("OPENROUTER_API_KEY", ""), os.environ.get("OPENAI_API_KEY", ""))
        memo = _secrets_memo.get("last")
        if memo is not None and memo[0] is self and memo[1] == env and (
                memo[3] is None or time.monotonic() < memo[3]):
            return list(memo[2])
        key_file = self.var_dir / "secret_key"
        values = [self.llm_api_key, self.github_token, self.admin_api_key, self.webhook_secret]
        if self.secret_key != PLACEHOLDER_SECRET:
            values.append(self.secret_key)
        elif key_file in _kept or key_file.is_file():
            values.append(self.signing_key())
        if "@" in self.smtp_url and ":" in self.smtp_url.split("@")[0]:
            values.append(self.smtp_url.split("@")[0].rsplit(":", 1)[-1])
        values.extend(env)
        found = [v for v in values if v and len(v) >= 6]
        final = self.secret_key != PLACEHOLDER_SECRET or key_file in _kept
        _secrets_memo["last"] = (self, env, found,
                                 None if final else time.monotonic() + KEY_FILE_RECHECK_S)
        return list(found)


KEY_FILE_RECHECK_S = 1.0
_kept: dict[Path, str] = {}
# secrets(): the settings and provider-key variables it last answered for, and its answer
_secrets_memo: dict[str, tuple[Settings, tuple[str, str], list[str], float | None]] = {}


def kept_secret(path: Path) -> str:
    """The random key kept at `path`, made (atomically, 0600) if there is none yet."""
    if path in _kept:
        return _kept[path]
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{_secrets.token_hex(6)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(_secrets.token_urlsafe(48))
        try:
            os.link(tmp, path)  # fails if another process made it first: theirs wins
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    key = path.read_text().strip()
    if len(key) < 32:
        raise RuntimeError(f"{path} holds no usable secret key; remove it to make a new one")
    _kept[path] = key
    _secrets_memo.clear()  # the key is known now: redacted from here on
    return key


@lru_cache
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> Settings:
    """Re-read the environment (tests and the CLI change it)."""
    get_settings.cache_clear()
    return get_settings()
