"""``vikingdb-local`` / ``python -m airflow_provider_vikingdb.local``: run the local VikingDB server.

Prints one line, ``vikingdb-local listening on http://HOST:PORT``, once it accepts
connections, then logs one line per request to stderr until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from airflow_provider_vikingdb.local.fields import FIELD_TYPES
from airflow_provider_vikingdb.local.server import DEFAULT_COLLECTIONS, DEFAULT_REGION, LocalVikingDB
from airflow_provider_vikingdb.local.store import parse_collection_spec


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vikingdb-local",
        description="A local stand-in for VikingDB's V2 data plane (delete, upsert, update, fetch, "
        "search/scalar, search/random, agg, Ping) that checks volcengine HMAC-SHA256 signatures.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8765, help="port (default: %(default)s; 0 picks a free one)"
    )
    parser.add_argument(
        "--ak",
        default=os.environ.get("VIKINGDB_LOCAL_AK", "AK"),
        help="accepted access key (default: $VIKINGDB_LOCAL_AK or AK)",
    )
    parser.add_argument(
        "--sk",
        default=os.environ.get("VIKINGDB_LOCAL_SK", "SK"),
        help="its secret key (default: $VIKINGDB_LOCAL_SK or SK)",
    )
    parser.add_argument(
        "--region",
        default=DEFAULT_REGION,
        help="region accepted in the signing scope (default: %(default)s)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("VIKINGDB_LOCAL_API_KEY"),
        help="also accept 'Authorization: Bearer KEY' (default: $VIKINGDB_LOCAL_API_KEY or off)",
    )
    parser.add_argument(
        "--collection",
        action="append",
        metavar="NAME[:KEY_FIELD[:TYPE]]",
        help="a collection; key field default id, TYPE string (default) or int64; repeatable "
        f"(default: {' and '.join(DEFAULT_COLLECTIONS)})",
    )
    parser.add_argument(
        "--index",
        action="append",
        default=[],
        metavar="COLLECTION:INDEX_NAME",
        help="an extra index; every collection already has {collection}_index; repeatable",
    )
    parser.add_argument(
        "--field",
        action="append",
        default=[],
        metavar="COLLECTION:FIELD:TYPE",
        help="a scalar field that filters, search/scalar and agg may use; TYPE one of "
        f"{', '.join(FIELD_TYPES)} (quote the list types); repeatable",
    )
    parser.add_argument(
        "--load",
        metavar="FILE",
        help='JSON lines of records to start with: {"collection": "...", "fields": {...}} per line, '
        "or just the fields when there is one collection",
    )
    parser.add_argument(
        "--index-lag",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="seconds before writes, deletes and TTL expiries reach fetch_in_index, search and agg "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--del-all-index-lag",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds before a del_all reaches the indexes; writes after it wait for it "
        "(default: the same as --index-lag)",
    )
    parser.add_argument(
        "--quota",
        type=float,
        default=None,
        metavar="ROWS_PER_SECOND",
        help="write quota per collection, shared by upsert/update/delete; 429 above it (default: off)",
    )
    parser.add_argument(
        "--quota-burst",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds of quota the bucket holds, the burst it admits at once (default: 1; needs --quota)",
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0, help="added to every request (default: %(default)s)"
    )
    parser.add_argument(
        "--fail-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="answer this fraction of data requests with 503 ServiceUnavailable (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for --fail-rate (default: random)")
    parser.add_argument(
        "--log-level", default="INFO", help="level of the per-request log on stderr (default: %(default)s)"
    )
    return parser


def read_load_file(path: str, collections: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Group the records of a ``--load`` file by collection; ValueError names the bad line."""
    only = collections[0] if len(collections) == 1 else None
    grouped: dict[str, list[dict[str, Any]]] = {}
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                item = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: not JSON: {exc}") from None
            if not isinstance(item, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object")
            if set(item) == {"collection", "fields"} and isinstance(item["fields"], dict):
                collection, fields = item["collection"], item["fields"]
            elif only is not None:
                collection, fields = only, item
            else:
                raise ValueError(
                    f'{path}:{number}: with several collections each line must be {{"collection": ..., '
                    '"fields": {...}}'
                )
            grouped.setdefault(collection, []).append(fields)
    return grouped


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def server_from_args(args: argparse.Namespace) -> LocalVikingDB:
    """The (not yet started) server the parsed options describe, records loaded.

    Raises ValueError, KeyError or OSError (an unreadable ``--load`` file) naming the problem.
    """
    if args.quota_burst is not None and args.quota is None:
        raise ValueError("--quota-burst sizes the quota's bucket: give --quota ROWS_PER_SECOND too")
    collections = args.collection or list(DEFAULT_COLLECTIONS)
    names = [parse_collection_spec(spec)[0] for spec in collections]
    server = LocalVikingDB(
        collections,
        indexes=args.index,
        fields=args.field,
        ak=args.ak,
        sk=args.sk,
        region=args.region,
        api_key=args.api_key,
        index_lag=args.index_lag,
        del_all_index_lag=args.del_all_index_lag,
        quota=args.quota,
        quota_burst=1.0 if args.quota_burst is None else args.quota_burst,
        latency_ms=args.latency_ms,
        fail_rate=args.fail_rate,
        seed=args.seed,
        host=args.host,
        port=args.port,
    )
    if args.load:
        for collection, rows in read_load_file(args.load, names).items():
            server.load(collection, rows)
    return server


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    try:
        server = server_from_args(args)
    except (ValueError, KeyError, OSError) as exc:
        parser.error(str(exc))

    # SIGTERM (docker stop, kill, a test's terminate()) stops as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.start()
    except OSError as exc:
        parser.error(f"cannot listen on {args.host}:{args.port}: {exc}")
    print(f"vikingdb-local listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
