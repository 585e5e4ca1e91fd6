"""Term lists fetched from URLs, for fleets that keep one list set in one place.

Each URL in ``settings.list_urls`` is a list file (``.toml`` or ``.txt``). Its last
good copy lives in ``{data_dir}/list-cache/<key>/<name>``, beside ``meta.json`` (the
URL, ETag, Last-Modified and sha256 of that copy), so a process that restarts while
the network is down serves the lists it served before. Polls are conditional
(``If-None-Match`` / ``If-Modified-Since``): an unchanged list costs a 304.

A fetched body is only *staged* (``<key>/incoming/``, with its ``meta.json``); it
replaces the cached copy once the whole list set loads with it (:mod:`deterrence.reload`),
so the cache only ever holds lists that were in service. Everything that needs room
on the disk happens while staging; putting a staged copy in service is two renames.
A cache that cannot be written raises :class:`CacheError` (the holder counts it and
keeps the lists in service). Options ride in the URL fragment, which
is never sent to the server: ``#sha256=<hex>`` pins the exact content (anything else
is refused), ``#name=lists.toml`` gives the file name (and, for ``.txt``, the list
id) when the URL path does not end in one.

Only ``https://`` unless ``settings.list_urls_allow_http``; redirects may not leave
https. The standard library's urllib does the fetching: it honours the usual
``https_proxy`` / ``no_proxy`` variables and needs no extra dependency, and checks
certificates against OpenSSL's default CAs, which ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``
set (how a list server with a private CA is trusted).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPMessage
from pathlib import Path, PurePosixPath
from typing import IO
from urllib.parse import parse_qs, unquote, urlsplit

from deterrence import __version__
from deterrence.lists import LIST_SUFFIXES

CACHE_DIR = "list-cache"
MAX_LIST_BYTES = 64 * 1024 * 1024
"""A larger download is refused: no real list comes near it, and memory stays bounded."""
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class FetchError(Exception):
    """A list URL could not be fetched or was refused. The message names the URL."""


class CacheError(Exception):
    """The list cache could not be written (a full disk, a read-only directory). The
    message names the directory; ``download`` is what was fetched, to stage elsewhere."""

    def __init__(self, message: str, download: Download | None = None) -> None:
        super().__init__(message)
        self.download = download


@dataclass(frozen=True, slots=True)
class RemoteList:
    url: str
    """Without the fragment: what is requested and shown in messages."""
    name: str
    sha256: str | None
    directory: Path

    @property
    def path(self) -> Path:
        """The cached copy in service."""
        return self.directory / self.name

    @property
    def staging(self) -> Path:
        return self.directory / "incoming" / self.name

    @property
    def meta_path(self) -> Path:
        return self.directory / "meta.json"

    @property
    def staging_meta(self) -> Path:
        return self.directory / "incoming" / "meta.json"

    def cached(self) -> bool:
        return self.path.is_file()


@dataclass(frozen=True, slots=True)
class Download:
    """A new body as the server sent it."""

    url: str
    body: bytes
    sha256: str
    etag: str | None
    last_modified: str | None


@dataclass(frozen=True, slots=True)
class Fetched:
    """A new body, staged but not yet in service."""

    remote: RemoteList
    sha256: str


def parse_list_url(raw: str, data_dir: Path, *, allow_http: bool) -> RemoteList:
    """A configured URL, checked. Raises ValueError with a message for the operator."""
    parts = urlsplit(raw)
    allowed = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in allowed or not parts.hostname:
        hint = "" if allow_http else " (plain http needs DETERRENCE_LIST_URLS_ALLOW_HTTP=true)"
        raise ValueError(f"list URL must be an https:// URL, not {raw!r}{hint}")
    options = {k: v[-1] for k, v in parse_qs(parts.fragment).items()}
    unknown = sorted(set(options) - {"sha256", "name"})
    if unknown:
        raise ValueError(f"{raw}: unknown URL fragment option(s) {', '.join(unknown)}")
    url = parts._replace(fragment="").geturl()
    pin = options.get("sha256", "").lower() or None
    if pin is not None and not _SHA256.match(pin):
        raise ValueError(f"{url}: #sha256= must be 64 hex digits")
    name = options.get("name") or unquote(PurePosixPath(parts.path).name)
    if not _NAME.match(name) or not name.endswith(LIST_SUFFIXES):
        raise ValueError(
            f"{url}: cannot tell the list's file name; the URL path must end in .toml or "
            ".txt, or add #name=<file>.toml"
        )
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    return RemoteList(url, name, pin, data_dir / CACHE_DIR / key)


def fetch(remote: RemoteList, *, timeout: float, allow_http: bool) -> Fetched | None:
    """Fetch ``remote`` conditionally. None when it has not changed since the cached
    copy; else the body is staged. Raises :class:`FetchError`, or :class:`CacheError`
    when the body came but cannot be staged."""
    download = _download(remote, timeout=timeout, allow_http=allow_http)
    return None if download is None else stage(remote, download)


def _download(remote: RemoteList, *, timeout: float, allow_http: bool) -> Download | None:
    headers = {"User-Agent": f"deterrence/{__version__}", "Accept": "*/*"}
    if remote.cached():
        meta = read_meta(remote)
        if meta.get("etag"):
            headers["If-None-Match"] = meta["etag"]
        if meta.get("last_modified"):
            headers["If-Modified-Since"] = meta["last_modified"]
    opener = urllib.request.build_opener(_RedirectHandler(allow_http))
    request = urllib.request.Request(remote.url, headers=headers)
    try:
        with opener.open(request, timeout=timeout) as response:
            body = _read_capped(response, remote.url)
            response_headers: HTTPMessage = response.headers
    except urllib.error.HTTPError as exc:
        if exc.code == 304 and remote.cached():
            return None
        raise FetchError(f"{remote.url}: HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise FetchError(f"{remote.url}: {reason}") from exc
    digest = hashlib.sha256(body).hexdigest()
    if remote.sha256 is not None and digest != remote.sha256:
        raise FetchError(f"{remote.url}: sha256 {digest} does not match the pinned {remote.sha256}")
    if remote.cached() and digest == read_meta(remote).get("sha256"):
        return None  # the server ignored the conditional headers
    etag, last_modified = response_headers.get("ETag"), response_headers.get("Last-Modified")
    return Download(remote.url, body, digest, etag, last_modified)


def stage(remote: RemoteList, download: Download) -> Fetched:
    """Write ``download`` and its meta.json beside ``remote``'s cached copy, not yet in
    service. Raises :class:`CacheError` (and leaves nothing staged)."""
    meta = {
        "url": remote.url,
        "sha256": download.sha256,
        "etag": download.etag,
        "last_modified": download.last_modified,
    }
    try:
        remote.staging.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(remote.staging, download.body)
        _write_atomically(remote.staging_meta, json.dumps(meta, indent=2).encode())
    except OSError as exc:
        fetched = Fetched(remote, download.sha256)
        discard(fetched)
        raise CacheError(_cannot_write(remote, exc), download) from exc
    return Fetched(remote, download.sha256)


def promote(fetched: Fetched) -> None:
    """Put a staged body in service as the cached copy: renames only, the body first
    (a meta.json left behind makes the next poll fetch it again, never skip it).
    Raises :class:`CacheError`."""
    remote = fetched.remote
    try:
        remote.staging.replace(remote.path)
        remote.staging_meta.replace(remote.meta_path)
    except OSError as exc:
        raise CacheError(_cannot_write(remote, exc)) from exc


def discard(fetched: Fetched) -> None:
    for path in (fetched.remote.staging, fetched.remote.staging_meta):
        with contextlib.suppress(OSError):
            path.unlink()


def move_cache(remote: RemoteList, home: RemoteList) -> None:
    """Copy ``remote``'s cached copy and meta.json to ``home`` (the same URL, another
    directory), then remove them: staged and promoted there like a new download.
    Raises :class:`CacheError` (leaving ``home`` as it was)."""
    try:
        body = remote.path.read_bytes()
    except OSError as exc:
        raise CacheError(f"{remote.url}: cannot read {remote.directory}: {exc.strerror}") from exc
    meta = read_meta(remote)
    digest = hashlib.sha256(body).hexdigest()
    fetched = stage(
        home, Download(home.url, body, digest, meta.get("etag"), meta.get("last_modified"))
    )
    try:
        promote(fetched)
    except CacheError:
        discard(fetched)
        raise
    for path in (remote.path, remote.meta_path):
        with contextlib.suppress(OSError):
            path.unlink()


def _cannot_write(remote: RemoteList, exc: OSError) -> str:
    return f"{remote.url}: cannot write the list cache in {remote.directory}: {exc.strerror or exc}"


def read_meta(remote: RemoteList) -> dict[str, str]:
    try:
        meta = json.loads(remote.meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(meta, dict) or meta.get("url") != remote.url:
        return {}
    return {k: v for k, v in meta.items() if isinstance(v, str)}


def _read_capped(response: IO[bytes], url: str) -> bytes:
    body = response.read(MAX_LIST_BYTES + 1)
    if len(body) > MAX_LIST_BYTES:
        raise FetchError(f"{url}: larger than {MAX_LIST_BYTES} bytes")
    return body


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with temporary.open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(path)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink()  # a write cut short by a full disk
        raise


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never from https to plain http."""

    def __init__(self, allow_http: bool) -> None:
        self.allow_http = allow_http

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if not self.allow_http and urlsplit(newurl).scheme != "https":
            raise FetchError(f"{req.full_url}: redirected away from https")
        return super().redirect_request(req, fp, code, msg, headers, newurl)
