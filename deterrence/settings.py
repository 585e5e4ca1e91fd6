"""Configuration, read from ``DETERRENCE_*`` environment variables (or a ``.env``
file) by pydantic-settings. Keyword arguments given in code win over the
environment: ``Settings(**overrides)``.

List-valued settings accept JSON in the environment, for example
``DETERRENCE_SEARCH_PATHS='["/search", "/api/*/search"]'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from deterrence.memo import DEFAULT_SIZE
from deterrence.resources import KEYWORD_LISTS_DIR, PAGES_DIR

FailMode = Literal["open", "closed"]
OversizeMode = Literal["reject", "closed", "open"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DETERRENCE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
    )

    # --- lists and matching -------------------------------------------------
    lists: list[Path] = Field(default_factory=lambda: [KEYWORD_LISTS_DIR])
    """Files or directories of term lists (DESIGN §3)."""
    max_query_chars: int = 1024
    """Texts are matched up to this many characters, which bounds the matching
    time. A longer one is matched up to the cap, then answered per
    ``on_oversize``: padding a term past the cap must not get it through."""
    match_memo_size: int = Field(default=DEFAULT_SIZE, ge=0)
    """Recent queries and words whose answers the matcher remembers, and recent
    query strings whose answers the middleware remembers (up to twice this many of
    each; a few MB). They keep hashes, never the text (docs/privacy.md); 0 turns
    them off."""
    on_error: FailMode = "open"
    """What happens when matching raises: ``open`` lets the request through,
    ``closed`` serves the warning page. Either way the error is counted."""
    on_oversize: OversizeMode = "reject"
    """What happens to a search too long to inspect whole — a text longer than
    ``max_query_chars``, a body larger than ``max_body_bytes`` or nested too deep to
    parse — when the part that could be inspected holds no ``block`` match:
    ``reject`` answers 414 (query string) or 413 (body) and the site never sees it;
    ``closed`` serves the warning page; ``open`` lets it through, inspected only in
    part. Either way it is counted (``query_too_long``, ``body_too_large``)."""

    # --- where the middleware looks ----------------------------------------
    search_paths: list[str] = Field(default_factory=lambda: ["/search"])
    """Exact paths or glob patterns (``/api/*/search``)."""
    query_params: list[str] = Field(default_factory=lambda: ["q"])
    json_keys: list[str] = Field(default_factory=lambda: ["q", "query"])
    """Keys (at any depth) whose string values are inspected in JSON bodies."""
    inspect_bodies: bool = True
    max_body_bytes: int = 64 * 1024
    """Bodies up to this size are inspected; larger ones are answered per
    ``on_oversize`` and counted as ``deterrence_errors_total{kind="body_too_large"}``."""

    # --- what happens on a match -------------------------------------------
    block_status: int = 200

    # --- warning pages -----------------------------------------------------
    pages_dir: Path = PAGES_DIR
    help_services_path: Path | None = None
    """Defaults to ``help_services.toml`` inside ``pages_dir``."""
    variants_path: Path | None = None
    """Defaults to ``variants.toml`` inside ``pages_dir``."""
    default_country: str | None = None
    """ISO 3166-1 alpha-2 code used when Accept-Language names no country."""
    default_locale: str = "en"
    prefix: str = "/_deterrence"
    """Path prefix of the routes deterrence serves itself (help redirect,
    dashboard, warning page for proxies)."""

    # --- measurement -------------------------------------------------------
    data_dir: Path = Path("deterrence-data")
    store_enabled: bool = True
    flush_interval_seconds: float = 60.0
    retention_days: int = 400
    metrics_path: str | None = "/metrics"
    """Mount Prometheus metrics here; ``None`` disables the route."""
    metrics_port: int | None = None
    """Serve metrics on a separate port instead of (or as well as) the app."""
    metrics_host: str = "127.0.0.1"
    """Address the separate metrics port binds to (loopback unless you say so)."""
    min_count: int = 10
    """Counts below this are suppressed on the dashboard and in reports."""
    dashboard_token: SecretStr | None = None
    dashboard_user: str | None = None
    dashboard_password: SecretStr | None = None

    # --- operations --------------------------------------------------------
    admin_token: SecretStr | None = None
    reload_poll_seconds: float = 0.0
    """Poll list files for changes every N seconds; 0 disables polling."""
    list_urls: list[str] = Field(default_factory=list)
    """HTTPS URLs of list files (``.toml`` / ``.txt``) for fleets, cached under
    ``data_dir``. Fragment options: ``#sha256=<hex>`` pins the content,
    ``#name=lists.toml`` names a file whose URL does not end in one."""
    list_urls_poll_seconds: float = 300.0
    """Poll the list URLs (ETag / If-Modified-Since) every N seconds; 0 disables."""
    list_urls_timeout_seconds: float = 10.0
    list_urls_allow_http: bool = False
    """Allow plain ``http://`` list URLs (tests, a trusted local mirror)."""
    redact_access_log: bool = True
    huge_pages: bool = True
    """Back the heap with transparent huge pages after start-up, and after reloads
    of 20,000 terms or more (Linux; deterrence.hugepages): matching at 100,000
    terms 10-25 % faster."""

    # --- reverse proxy (`deterrence proxy`) ---------------------------------
    upstream: str | None = None
    """The site behind ``deterrence proxy`` (``http://127.0.0.1:8080``)."""
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1"])
    """Addresses or CIDR networks (``"*"`` for any) whose ``X-Forwarded-*`` headers
    the proxy believes and extends; from anyone else they are replaced."""
    upstream_preserve_host: bool = False
    """Send the client's ``Host`` upstream instead of the upstream's own."""
    upstream_connect_timeout: float = 5.0
    upstream_read_timeout: float = 60.0
    """Longest silence while waiting for the upstream's answer or its next bytes."""
    upstream_write_timeout: float = 60.0
    """Longest wait for the upstream to accept the next piece of a request body."""
    upstream_pool_timeout: float = 5.0
    """Longest wait for a free connection when all ``upstream_max_connections`` are busy."""
    upstream_max_connections: int = 100

    def resolved_help_services_path(self) -> Path:
        return self.help_services_path or self.pages_dir / "help_services.toml"

    def resolved_variants_path(self) -> Path:
        return self.variants_path or self.pages_dir / "variants.toml"
