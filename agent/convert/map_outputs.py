"""fluent-bit [OUTPUT] sections -> the agent's outputs."""

from __future__ import annotations

import os
import re
from typing import Any

from agent.convert.mapping_base import PLACEHOLDER, MapperBase, host_port, parse_bool
from agent.convert.model import Section


class OutputMapping(MapperBase):
    # ------------------------------------------------------------------ outputs

    def output(self, section: Section) -> None:
        plugin = section.plugin
        kinds = {
            "es": "elasticsearch",
            "elasticsearch": "elasticsearch",
            "opensearch": "opensearch",
            "s3": "s3",
            "file": "file",
            "stdout": "stdout",
            "null": "null",
            "http": "http",
        }
        kind = kinds.get(plugin)
        if kind is None:
            self.note(
                section,
                None,
                f"[OUTPUT] {plugin or '(no Name)'}: no such output in the "
                "agent (it has s3, elasticsearch/opensearch, http, file, stdout, null); not "
                "translated: its records are not sent anywhere",
            )
            return
        target: dict[str, Any] = {"type": kind}
        self.common(section, target, selector=True)
        if "match" not in target and "match_regex" not in target:
            self.note(
                section,
                None,
                f"[OUTPUT] {plugin} without Match: fluent-bit sends it no record; not written",
            )
            for entry in section.entries:
                section.used.add(entry.key.lower())
            return
        retry = section.get("retry_limit")
        if retry:
            lowered = retry.lower()
            if lowered in ("false", "no_limits", "off"):
                target["retry_limit"] = "unlimited"
            elif lowered == "no_retries":
                target["retry_limit"] = 0
            elif retry.isdigit():
                target["retry_limit"] = int(retry)
        workers = section.get("workers")
        if workers and workers.isdigit() and int(workers) > 0:
            target["workers"] = int(workers)
        getattr(self, f"output_{'es' if kind in ('elasticsearch', 'opensearch') else kind}")(
            section, target
        )
        self.outputs.append(target)
        self.finish_section(section, f"[OUTPUT] {plugin}")

    def output_null(self, section: Section, target: dict[str, Any]) -> None:
        return None

    def output_stdout(self, section: Section, target: dict[str, Any]) -> None:
        fmt = section.entry("format")
        if fmt is None or fmt.value.lower() != "json_lines":
            self.note(
                section,
                "format" if fmt else None,
                "[OUTPUT] stdout: records are "
                "printed as JSON lines (fluent-bit's Format json_lines)",
                left_out=False,
            )
        self.date_key(section)

    def date_key(self, section: Section) -> None:
        """json_date_key/json_date_format: records keep their own ``time``; no key is added."""
        for key in ("json_date_key", "json_date_format"):
            entry = section.entry(key)
            if entry and entry.value.lower() not in ("false", "off"):
                self.note(
                    section,
                    key,
                    f"{entry.key} {entry.value}: records keep their time field; no date key "
                    "is added",
                )

    def output_file(self, section: Section, target: dict[str, Any]) -> None:
        directory = section.get("path") or "."
        name = section.get("file")
        if not name:
            self.note(
                section,
                None,
                "[OUTPUT] file without File: fluent-bit names the file "
                "after the tag; one file, out.log, is written instead",
                left_out=False,
            )
            name = "out.log"
        target["path"] = os.path.join(directory, name)
        fmt = section.entry("format")
        if fmt is None or fmt.value.lower() not in ("plain",):
            self.note(
                section,
                "format" if fmt else None,
                "[OUTPUT] file: the file holds one "
                "JSON record per line (no tag or timestamp prefix)",
                left_out=False,
            )

    def output_s3(self, section: Section, target: dict[str, Any]) -> None:
        bucket = section.get("bucket")
        if not bucket:
            self.note(
                section, None, '[OUTPUT] s3 without bucket: bucket = "${S3_BUCKET}" written; set it'
            )
        target["bucket"] = bucket or "${S3_BUCKET}"
        self.copy(
            section,
            target,
            (
                ("region", "region"),
                ("endpoint", "endpoint_url"),
                ("storage_class", "storage_class"),
                ("canned_acl", "canned_acl"),
                ("role_arn", "role_arn"),
                ("sts_endpoint", "sts_endpoint_url"),
                ("external_id", "external_id"),
                ("content_type", "content_type"),
            ),
        )
        for key, ours in (
            ("total_file_size", "total_file_size"),
            ("upload_chunk_size", "upload_chunk_size"),
        ):
            size = self.size(section, key)
            if size is not None:
                target[ours] = size
        timeout = self.duration(section, "upload_timeout")
        if timeout is not None:
            target["upload_timeout"] = timeout
        compression = (section.get("compression") or "none").lower()
        if compression in ("gzip", "zstd", "none"):
            target["compression"] = compression
        else:
            target["compression"] = "gzip"
            self.note(
                section, "compression", f"compression {compression}: not available; gzip written"
            )
        key_format = section.get("s3_key_format") or "/fluent-bit-logs/$TAG/%Y/%m/%d/%H/%M/%S"
        key = re.sub(r"\$TAG\[(\d+)\]", r"${tag[\1]}", key_format)
        key = key.replace("$TAG", "${tag}").replace("$UUID", "${chunk_id}")
        key = key.replace("$INDEX", "${index}")
        key = key.lstrip("/")
        if "${chunk_id}" not in key:
            key += "-${chunk_id}"
        if "${host}" not in key:
            key = key.replace("${chunk_id}", "${host}-${chunk_id}", 1)
        if key != key_format:
            self.note(
                section,
                "s3_key_format" if section.entry("s3_key_format") else None,
                f"s3_key_format {key_format} becomes key_format = {key!r} (keys carry "
                "${host} and ${chunk_id}, so a resend overwrites instead of duplicating)",
                left_out=False,
            )
        target["key_format"] = key
        delimiters = section.get("s3_key_format_tag_delimiters")
        if delimiters and delimiters != ".":
            self.note(
                section,
                "s3_key_format_tag_delimiters",
                f"s3_key_format_tag_delimiters "
                f"{delimiters}: ${{tag[N]}} splits the tag at dots only",
            )
        self.date_key(section)

    def output_es(self, section: Section, target: dict[str, Any]) -> None:
        tls = bool(self.flag(section, "tls"))
        scheme = "https" if tls else "http"
        host = section.get("host") or "127.0.0.1"
        port = section.get("port") or "9200"
        prefix = (section.get("path") or "").rstrip("/")
        hosts = [h.strip() for h in host.split(",") if h.strip()] if "," in host else [host]
        urls = [
            f"{scheme}://{h}{prefix}"
            if ":" in PLACEHOLDER.sub("", h).split("]")[-1]  # host:port already
            else f"{scheme}://{host_port(h, port)}{prefix}"
            for h in hosts
        ]
        target["hosts"] = urls[0] if len(urls) == 1 else urls
        if not section.entry("index") and not parse_bool(section.get("logstash_format")):
            target["index"] = "fluent-bit"  # fluent-bit's default index
        self.copy(
            section,
            target,
            (
                ("http_user", "user"),
                ("http_passwd", "password"),
                ("index", "index"),
                ("logstash_prefix", "logstash_prefix"),
                ("logstash_dateformat", "logstash_dateformat"),
                ("logstash_prefix_separator", "logstash_prefix_separator"),
                ("time_key", "time_key"),
                ("tag_key", "tag_key"),
                ("pipeline", "pipeline"),
                ("tls.ca_file", "ca_file"),
                ("tls.crt_file", "cert_file"),
                ("tls.key_file", "key_file"),
                ("aws_region", "aws_region"),
                ("type", "type_name"),
                ("http_api_key", "api_key"),
            ),
        )
        self.copy_flags(
            section,
            target,
            (
                ("logstash_format", "logstash_format"),
                ("include_tag_key", "include_tag_key"),
                ("replace_dots", "replace_dots"),
                ("suppress_type_name", "suppress_type_name"),
                ("tls.verify", "verify_tls"),
                ("aws_auth", "aws_auth"),
            ),
        )
        if self.flag(section, "generate_id"):
            target["id_mode"] = "hash"
            self.note(
                section,
                "generate_id",
                'Generate_ID On: id_mode = "hash" derives '
                "_id from the chunk and position (a resend overwrites); fluent-bit "
                "hashes the record",
                left_out=False,
            )
        compress = section.get("compress")
        if compress and compress.lower() == "gzip":
            target["compression"] = "gzip"
        op = section.entry("write_operation")
        if op and op.value.lower() == "create":
            target["op_type"] = "create"
        elif op and op.value.lower() != "index":
            self.note(
                section, "write_operation", f"Write_Operation {op.value}: only index and create"
            )

    def output_http(self, section: Section, target: dict[str, Any]) -> None:
        tls = bool(self.flag(section, "tls"))
        host = section.get("host") or "127.0.0.1"
        port = section.get("port") or ("443" if tls else "80")
        uri = section.get("uri") or "/"
        if not uri.startswith("/"):
            uri = "/" + uri
        target["url"] = f"{'https' if tls else 'http'}://{host_port(host, port)}{uri}"
        fmt = (section.get("format") or "msgpack").lower()
        if fmt in ("json_lines", "json_stream"):
            target["format"] = "ndjson"
        elif fmt == "json":
            target["format"] = "json"
        else:
            target["format"] = "ndjson"
            self.note(
                section,
                "format" if section.entry("format") else None,
                f"[OUTPUT] http: Format {fmt}: records are sent as JSON lines (format = "
                '"ndjson"); the receiver must accept them',
            )
        self.copy(section, target, (("http_user", "http_user"), ("http_passwd", "http_passwd")))
        ca_file = section.get("tls.ca_file")
        if ca_file:
            target["ca_file"] = ca_file
        verify = self.flag(section, "tls.verify")
        if verify is not None:
            target["tls_verify"] = verify
        compress = section.get("compress")
        if compress and compress.lower() == "gzip":
            target["compress"] = "gzip"
        elif compress:
            self.note(section, "compress", f"compress {compress}: only gzip; not compressed")
        headers: dict[str, str] = {}
        for entry in section.all("header"):
            name, _, value = entry.value.strip().partition(" ")
            if name and value.strip():
                headers[name] = value.strip()
            else:
                self.note(section, "header", f"Header {entry.value!r}: expected 'Name value'")
        if headers:
            target["headers"] = headers
        self.date_key(section)
