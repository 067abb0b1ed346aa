"""A schema registry (Confluent REST API) behind confluent-kafka's own client.

Works with Confluent Schema Registry, Karapace and Apicurio's ``/apis/ccompat/v7``
endpoint; ``mock://name`` gives confluent-kafka's in-process mock (for unit tests).
Ids and schemas are cached: a registry is asked about a schema once per process.
"""

from __future__ import annotations

import json
import threading
import weakref
from typing import Any

from arroyo._optional import require
from arroyo.errors import DecodeError, RegistryError
from arroyo.schema import Schema


class Registry:
    """Registers writer schemas and looks schemas up by id.

    ``config`` is passed to ``confluent_kafka.schema_registry.SchemaRegistryClient``
    (``basic.auth.user.info``, ``ssl.ca.location``...). Errors reaching the registry raise
    RegistryError (retryable); an id the registry does not know raises DecodeError.
    Its HTTP connections are closed by :meth:`close`, or when it is garbage-collected
    (or the interpreter exits), whichever comes first.
    """

    def __init__(self, url: str, **config: Any) -> None:
        sr = require("confluent_kafka.schema_registry", "kafka", "A schema registry")
        self.url = url
        self._client = sr.SchemaRegistryClient.new_client({"url": url, **config})
        self._closer = weakref.finalize(self, _close, self._client)
        self._schema_cls = sr.Schema
        self._error_cls = sr.SchemaRegistryError
        self._ids: dict[tuple[str, bytes], int] = {}
        self._schemas: dict[int, Schema] = {}
        self._lock = threading.Lock()

    def register(self, subject: str, schema: Schema) -> int:
        """The id of ``schema`` under ``subject``, registering it when new."""
        key = (subject, schema.fingerprint)
        found = self._ids.get(key)
        if found is not None:
            return found
        with self._lock:
            try:
                schema_id = int(
                    self._client.register_schema(
                        subject, self._schema_cls(schema.to_json(None), "AVRO")
                    )
                )
            except self._error_cls as exc:
                raise RegistryError(
                    f"registry {self.url} refused schema {schema.name} for subject "
                    f"{subject!r}: {exc}"
                ) from None
            except Exception as exc:
                raise RegistryError(f"registry {self.url} unreachable: {exc}") from None
            self._ids[key] = schema_id
            self._schemas[schema_id] = schema
            return schema_id

    def schema(self, schema_id: int) -> Schema:
        """The schema with this id (fetched once, then cached)."""
        found = self._schemas.get(schema_id)
        if found is not None:
            return found
        with self._lock:
            try:
                registered = self._client.get_schema(schema_id)
            except self._error_cls as exc:
                if getattr(exc, "http_status_code", None) == 404:
                    raise DecodeError(f"schema id {schema_id} is unknown to {self.url}") from None
                raise RegistryError(
                    f"registry {self.url} failed on id {schema_id}: {exc}"
                ) from None
            except Exception as exc:
                raise RegistryError(f"registry {self.url} unreachable: {exc}") from None
            if registered.schema_type not in (None, "AVRO"):
                raise DecodeError(f"schema id {schema_id} is {registered.schema_type}, not Avro")
            schema = Schema.from_definition(
                json.loads(registered.schema_str), source=f"{self.url} id {schema_id}"
            )
            self._schemas[schema_id] = schema
            return schema

    def close(self) -> None:
        """Close the client's HTTP connections (idempotent). What was cached is still
        known; anything that needs the registry after it raises RegistryError."""
        self._closer()


def _close(client: Any) -> None:
    """Close ``client``, a SchemaRegistryClient (one without ``close()``, from an older
    confluent-kafka, is left as it is)."""
    close = getattr(client, "close", None)
    if close is not None:
        close()
