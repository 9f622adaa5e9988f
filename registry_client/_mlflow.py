"""MLflow's model registry, through its REST API and its artifact proxy.

Versions are read from ``/api/2.0/mlflow/model-versions/*`` and
``/registered-models/alias``; a version's files are found from its download URI
(``models:/m-...`` logged models, ``runs:/RUN/PATH`` or ``mlflow-artifacts:/PATH``)
and listed and fetched through ``/api/2.0/mlflow-artifacts/artifacts``, which the
server offers when it runs with ``--serve-artifacts`` (the default since MLflow 2).
MLflow records no digests; a ``sluice-manifest.json`` stored with the version (written
by ``sluice registry push``) supplies them.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from registry_client._errors import (
    AuthenticationError,
    InvalidReference,
    NetworkError,
    NotFound,
    RegistryError,
    UnsupportedSource,
)
from registry_client._manifest import MANIFEST_NAME, apply_manifest
from registry_client._mlflow_audit import MlflowAuditLog
from registry_client._options import HttpOptions, auth_from_env, tls_from_env
from registry_client._reference import LATEST, ModelReference
from registry_client._version import FileEntry, Lineage, ModelVersion, format_timestamp

__all__ = ["MlflowRegistry", "parse_mlflow_uri"]

_API = "/api/2.0/mlflow"
_ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
_TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})
_MAX_FILES = 10_000


def _quote_filter(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class MlflowRegistry:
    """An async client of one MLflow tracking server; use it as ``async with``."""

    def __init__(
        self,
        base_url: str,
        *,
        options: HttpOptions | None = None,
        transport: Any = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.uri = f"mlflow+{self.base_url}"
        self.options = options or HttpOptions()
        kwargs: dict[str, Any] = {}
        if transport is not None:
            kwargs["transport"] = transport
        else:
            kwargs["verify"] = tls_from_env(env)
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"User-Agent": "sluice-registry-client", **auth_from_env(env)},
            timeout=self.options.timeout(),
            follow_redirects=True,
            **kwargs,
        )
        self._closed = False
        self._rng = random.Random()
        self._audit: MlflowAuditLog | None = None

    async def __aenter__(self) -> MlflowRegistry:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        await self._client.aclose()

    @property
    def http(self) -> Any:
        """The client that downloads ``FileEntry.source`` URLs (same auth and TLS)."""
        return self._client

    # -- REST plumbing -------------------------------------------------------

    async def _request(self, method: str, path: str, *, raw: bool = False, **kwargs: Any) -> Any:
        import httpx

        if self._closed:
            raise RegistryError("the MLflow registry client is closed")
        failures = 0
        while True:
            try:
                response = await self._client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                failures += 1
                if failures >= self.options.retry.max_attempts:
                    raise NetworkError(
                        f"cannot reach MLflow at {self.base_url}: {type(exc).__name__}: {exc}"
                    ) from None
                await asyncio.sleep(self.options.retry.delay(failures, self._rng))
                continue
            status = response.status_code
            if status in _TRANSIENT:
                failures += 1
                if failures >= self.options.retry.max_attempts:
                    raise NetworkError(f"MLflow at {self.base_url} answered {status} to {path}")
                await asyncio.sleep(self.options.retry.delay(failures, self._rng))
                continue
            if raw and status == 200:
                return response.content
            return self._decode(response, path)

    def _decode(self, response: Any, path: str) -> Any:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = {}
        if status == 200:
            return body
        code = body.get("error_code", "") if isinstance(body, dict) else ""
        message = body.get("message", "") if isinstance(body, dict) else ""
        message = message or response.text.strip()[:200] or f"HTTP {status}"
        if status in (401, 403):
            raise AuthenticationError(f"MLflow refused the request ({status}): {message}")
        if status == 404 or code == "RESOURCE_DOES_NOT_EXIST":
            raise NotFound(message)
        if code == "INVALID_PARAMETER_VALUE" and "not found" in message.lower():
            raise NotFound(message)  # what MLflow answers for a missing alias
        raise RegistryError(f"MLflow answered {status} to {path}: {message}")

    async def _get(self, endpoint: str, **params: Any) -> Any:
        return await self._request("GET", f"{_API}/{endpoint}", params=params)

    async def _post(self, endpoint: str, body: Mapping[str, Any]) -> Any:
        return await self._request("POST", f"{_API}/{endpoint}", json=dict(body))

    async def api(
        self,
        method: str,
        endpoint: str,
        body: Mapping[str, Any] | None = None,
        *,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """One call of MLflow's REST API (``/api/2.0/mlflow/ENDPOINT``), with this
        client's retries and error mapping."""
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs["json"] = dict(body)
        if params is not None:
            kwargs["params"] = dict(params)
        return await self._request(method, f"{_API}/{endpoint}", **kwargs)

    @property
    def audit(self) -> MlflowAuditLog:
        """The hash-chained log of who changed what and why, kept in this server (the
        ``sluice-audit`` experiment), so everyone using the server shares it."""
        if self._audit is None:
            self._audit = MlflowAuditLog(self)
        return self._audit

    # -- the registry ----------------------------------------------------------

    async def _version_record(self, ref: ModelReference) -> dict[str, Any]:
        if ref.version is not None:
            return dict((await self._get("model-versions/get", name=ref.name, version=str(ref.version)))["model_version"])  # fmt: skip
        if ref.alias and ref.alias != LATEST:
            try:
                body = await self._get("registered-models/alias", name=ref.name, alias=ref.alias)
            except NotFound:
                await self._get("registered-models/get", name=ref.name)  # names the model if absent
                raise NotFound(f"model '{ref.name}' has no alias '{ref.alias}'") from None
            record = dict(body["model_version"])
            tags = {t["key"]: t["value"] for t in record.get("tags", [])}
            if any(tags.get(k) != v for k, v in ref.tags):
                raise NotFound(f"{ref}: version {record['version']} lacks tags {dict(ref.tags)}")
            return record
        found = await self._search(ref.name, dict(ref.tags), limit=1)
        if not found:
            await self._get("registered-models/get", name=ref.name)
            what = f" with tags {dict(ref.tags)}" if ref.tags else ""
            raise NotFound(f"model '{ref.name}' has no version{what}")
        return found[0]

    async def _search(
        self, name: str | None, tags: Mapping[str, str], limit: int = 200
    ) -> list[dict[str, Any]]:
        clauses = [f"name={_quote_filter(name)}"] if name else []
        clauses += [f"tags.`{k}`={_quote_filter(v)}" for k, v in tags.items()]
        params: dict[str, Any] = {
            "max_results": min(limit, 200),
            "order_by": ["version_number DESC"],
        }
        if clauses:
            params["filter"] = " and ".join(clauses)
        out: list[dict[str, Any]] = []
        while True:
            body = await self._get("model-versions/search", **params)
            out.extend(body.get("model_versions", []))
            token = body.get("next_page_token")
            if not token or len(out) >= limit:
                return out[:limit]
            params["page_token"] = token

    async def resolve(self, ref: ModelReference) -> ModelVersion:
        """Pin ``ref`` to one version and list its files (digests from a manifest if any)."""
        record = await self._version_record(ref)
        name, number = record["name"], int(record["version"])
        download = await self._get(
            "model-versions/get-download-uri", name=name, version=str(number)
        )
        root = await self._artifact_path(download.get("artifact_uri") or record.get("source", ""))
        files = await self._list_files(root)
        lineage = await self._lineage(record)
        version = ModelVersion(
            self.uri, name, number, tuple(files), lineage, aliases=tuple(record.get("aliases", []))
        )
        manifest = next((f for f in files if f.path == MANIFEST_NAME), None)
        if manifest is None:
            return version
        return apply_manifest(version, await self._request("GET", manifest.source, raw=True))

    async def _artifact_path(self, uri: str) -> str:
        """The artifact-proxy path of a version source in any of MLflow's forms."""
        for _ in range(4):
            scheme, _, rest = uri.partition(":")
            if scheme == "mlflow-artifacts":
                parts = urlsplit(uri)
                return parts.path.strip("/")
            if scheme == "runs":
                run_id, _, sub = rest.lstrip("/").partition("/")
                run = (await self._get("runs/get", run_id=run_id))["run"]
                uri = run["info"]["artifact_uri"].rstrip("/") + (f"/{sub}" if sub else "")
                continue
            if scheme == "models" and rest.lstrip("/").startswith("m-"):
                model_id = rest.lstrip("/").split("/", 1)[0]
                body = await self._get(f"logged-models/{quote(model_id)}")
                uri = body["model"]["info"]["artifact_uri"]
                continue
            break
        raise UnsupportedSource(
            f"version files at {uri!r} are not served by the MLflow artifact proxy; "
            "run the server with --serve-artifacts (the artifact store must be proxied)"
        )

    async def _list_files(self, root: str) -> list[FileEntry]:
        files: list[FileEntry] = []
        pending = [""]
        while pending:
            rel = pending.pop()
            path = f"{root}/{rel}".rstrip("/") if rel else root
            body = await self._request("GET", _ARTIFACTS, params={"path": path})
            for entry in body.get("files", []):
                name = entry["path"].rsplit("/", 1)[-1]
                child = f"{rel}/{name}" if rel else name
                if entry.get("is_dir"):
                    pending.append(child)
                else:
                    size = entry.get("file_size")
                    files.append(
                        FileEntry(
                            child,
                            int(size) if size is not None else None,
                            None,
                            source=f"{self.base_url}{_ARTIFACTS}/{quote(f'{root}/{child}')}",
                        )
                    )
            if len(files) > _MAX_FILES:
                raise RegistryError(f"{root}: more than {_MAX_FILES} files")
        if not files:
            raise NotFound(f"no files at mlflow-artifacts:/{root}")
        return sorted(files, key=lambda f: f.path)

    async def _lineage(self, record: Mapping[str, Any]) -> Lineage:
        tags = {t["key"]: t["value"] for t in record.get("tags", [])}
        run_id = record.get("run_id", "") or ""
        git_commit = tags.get("sluice.git_commit", "")
        dataset = tags.get("sluice.dataset", "")
        if run_id and not (git_commit and dataset):
            try:
                run = (await self._get("runs/get", run_id=run_id))["run"]
            except NotFound:
                run = {}
            run_tags = {t["key"]: t["value"] for t in run.get("data", {}).get("tags", [])}
            git_commit = git_commit or run_tags.get("mlflow.source.git.commit", "")
            inputs = run.get("inputs", {}).get("dataset_inputs", [])
            if not dataset and inputs:
                ds = inputs[0].get("dataset", {})
                dataset = ds.get("name", "") + (f"@{ds['digest']}" if ds.get("digest") else "")
        return Lineage(
            run_id=run_id,
            git_commit=git_commit,
            dataset=dataset,
            description=record.get("description", "") or "",
            created_at=format_timestamp(record.get("creation_timestamp")),
            created_by=record.get("user_id", "") or "",
            source=record.get("source", ""),
            tags=tags,
        )

    async def list_models(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        params: dict[str, Any] = {"max_results": 100}
        while True:
            body = await self._get("registered-models/search", **params)
            for model in body.get("registered_models", []):
                latest = [int(v["version"]) for v in model.get("latest_versions", [])]
                out.append(
                    {
                        "name": model["name"],
                        "description": model.get("description", ""),
                        "aliases": {
                            a["alias"]: int(a["version"]) for a in model.get("aliases", [])
                        },
                        "latest_version": max(latest) if latest else None,
                    }
                )
            token = body.get("next_page_token")
            if not token:
                return out
            params["page_token"] = token

    async def list_versions(self, name: str) -> list[ModelVersion]:
        records = await self._search(name, {}, limit=10_000)
        if not records:
            await self._get("registered-models/get", name=name)
        return [await self._shallow(r) for r in reversed(records)]

    async def search_versions(
        self, tags: Mapping[str, str], name: str | None = None
    ) -> list[ModelVersion]:
        return [await self._shallow(r) for r in reversed(await self._search(name, tags, 10_000))]

    async def _shallow(self, record: Mapping[str, Any]) -> ModelVersion:
        tags = {t["key"]: t["value"] for t in record.get("tags", [])}
        lineage = Lineage(
            run_id=record.get("run_id", "") or "",
            description=record.get("description", "") or "",
            created_at=format_timestamp(record.get("creation_timestamp")),
            created_by=record.get("user_id", "") or "",
            source=record.get("source", ""),
            tags=tags,
        )
        return ModelVersion(self.uri, record["name"], int(record["version"]), (), lineage,
                            aliases=tuple(record.get("aliases", [])))  # fmt: skip

    # -- writes: `sluice registry push | register | tag | alias | delete` ------------

    async def set_alias(self, name: str, alias: str, version: int) -> None:
        await self._post("registered-models/alias", {"name": name, "alias": alias, "version": str(version)})  # fmt: skip

    async def set_tags(self, name: str, version: int, tags: Mapping[str, str]) -> None:
        """Set ``tags`` on one model version (``sluice profile --registry`` records its
        result this way); MLflow takes one tag per call."""
        for key, value in tags.items():
            await self._post("model-versions/set-tag",
                             {"name": name, "version": str(version), "key": key, "value": value})  # fmt: skip

    async def delete_tags(self, name: str, version: int, keys: Sequence[str]) -> None:
        for key in keys:
            await self.api("DELETE", "model-versions/delete-tag",
                           {"name": name, "version": str(version), "key": key})  # fmt: skip

    async def delete_alias(self, name: str, alias: str) -> None:
        try:
            await self.api("DELETE", "registered-models/alias", {"name": name, "alias": alias})
        except NotFound:
            raise NotFound(f"model '{name}' has no alias '{alias}'") from None

    async def get_version(self, name: str, version: int) -> ModelVersion:
        """One version's record (no file listing)."""
        body = await self._get("model-versions/get", name=name, version=str(version))
        return await self._shallow(body["model_version"])

    async def delete_version(self, name: str, version: int) -> list[str]:
        """Delete one version; returns the aliases that pointed at it (MLflow drops them)."""
        aliases = list((await self.get_version(name, version)).aliases)
        await self.api("DELETE", "model-versions/delete", {"name": name, "version": str(version)})
        return aliases

    async def upload_artifact(self, path: str, content: bytes) -> None:
        response = await self._client.put(f"{_ARTIFACTS}/{quote(path)}", content=content)
        self._decode(response, path)

    async def create_run(self, experiment_id: str, tags: Mapping[str, str]) -> dict[str, Any]:
        body = await self._post(
            "runs/create",
            {"experiment_id": experiment_id,
             "tags": [{"key": k, "value": v} for k, v in tags.items()]},
        )  # fmt: skip
        return dict(body["run"]["info"])

    async def finish_run(self, run_id: str) -> None:
        await self._post("runs/update", {"run_id": run_id, "status": "FINISHED"})

    async def create_version(
        self, name: str, source: str, run_id: str, tags: Mapping[str, str], description: str
    ) -> int:
        try:
            await self._post("registered-models/create", {"name": name})
        except RegistryError as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
                raise
        body = await self._post(
            "model-versions/create",
            {"name": name, "source": source, "run_id": run_id, "description": description,
             "tags": [{"key": k, "value": v} for k, v in tags.items()]},
        )  # fmt: skip
        return int(body["model_version"]["version"])


def parse_mlflow_uri(uri: str) -> str:
    """``mlflow+http://host:port[/prefix]`` (or plain http(s)) -> the server's base URL."""
    base = uri.removeprefix("mlflow+")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidReference(f"registry URI {uri!r}: expected mlflow+http(s)://HOST:PORT")
    return base.rstrip("/")
