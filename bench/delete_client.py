"""One client deleting N ids from a running local server, in a process of its own.

Run by ``bench/throughput.py`` (one fresh interpreter per client, so that its CPU
time is its own); prints one JSON line. Not meant to be run by hand, but it can be:

    .venv/bin/python bench/delete_client.py hook --url http://127.0.0.1:8765 --ids 60000

Clients:
- ``template``: written like the service's documented request template: sequential,
  a fresh ``requests.request`` per batch, signed with volcengine's SignerV4
  Request/Credentials, no retry (a failed batch is lost).
- ``sdk``: the official ``vikingdb-python-sdk``, one ``collection(...).delete`` per
  100 ids, with its own retries (3 attempts); a batch whose attempts all fail is lost.
- ``hook``: ``VikingDBHook().delete(ids, collection_name=...)`` with every default.

CPU is ``time.process_time()`` (all threads of this process) over the delete only:
imports, setup (the SDK's constructor pings; so does the hook before the clock) and
id generation are left out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from urllib.parse import urlsplit

# Long enough for Airflow to mask the secret without a warning line in the tables.
AK, SK, REGION = "AKBENCH", "SK-bench-secret", "cn-beijing"


def use_connection(url: str, ak: str = AK, sk: str = SK) -> None:
    """Point ``vikingdb_default`` at ``url`` (``http://host:port``) through its environment variable.

    The scheme goes in the host, not in a ``scheme`` extra: Airflow masks every extra value and
    warns that "http" is too short to mask.
    """
    parts = urlsplit(url)
    os.environ["AIRFLOW_CONN_VIKINGDB_DEFAULT"] = json.dumps(
        {
            "conn_type": "vikingdb",
            "host": f"{parts.scheme}://{parts.hostname}",
            "port": parts.port,
            "login": ak,
            "password": sk,
            "extra": {"region": REGION},
        }
    )


DELETE_PATH = "/api/vikingdb/data/delete"
BATCH = 100


def make_ids(count: int) -> list[str]:
    return [f"id_{n:07d}" for n in range(count)]


def run_template(url: str, collection: str, ids: list[str]) -> dict:
    import requests
    from volcengine.auth.SignerV4 import SignerV4
    from volcengine.base.Request import Request
    from volcengine.Credentials import Credentials

    domain = urlsplit(url).netloc

    # The documented template: build a volcengine Request, sign it, send it with requests.request.
    def prepare_request(method, path, params=None, data=None):
        r = Request()
        r.set_shema("http")
        r.set_method(method)
        r.set_connection_timeout(10)
        r.set_socket_timeout(10)
        r.set_headers({"Accept": "application/json", "Content-Type": "application/json", "Host": domain})
        if params:
            r.set_query(params)
        r.set_host(domain)
        r.set_path(path)
        if data is not None:
            r.set_body(json.dumps(data))
        SignerV4.sign(r, Credentials(AK, SK, "vikingdb", REGION))
        return r

    failed = 0
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(ids), BATCH):
        body = {"collection_name": collection, "ids": ids[start : start + BATCH]}
        req = prepare_request("POST", DELETE_PATH, data=body)
        try:
            response = requests.request(
                method=req.method,
                url=f"http://{domain}{req.path}",
                headers=req.headers,
                data=req.body,
                timeout=10,
            )
            if response.status_code != 200:
                failed += 1
        except requests.RequestException:
            failed += 1
    return {"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu, "failed": failed}


def run_sdk(url: str, collection: str, ids: list[str]) -> dict:
    import vikingdb

    client = vikingdb.VikingDB(
        host=urlsplit(url).netloc, region=REGION, auth=vikingdb.IAM(ak=AK, sk=SK), scheme="http", timeout=10
    )
    coll = client.collection(collection_name=collection)
    failed = 0
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(ids), BATCH):
        try:
            coll.delete({"ids": ids[start : start + BATCH]})
        except Exception:
            failed += 1
    return {"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu, "failed": failed}


def run_hook(url: str, collection: str, ids: list[str]) -> dict:
    use_connection(url)
    from airflow_provider_vikingdb.exceptions import VikingDBError
    from airflow_provider_vikingdb.hooks.vikingdb import VikingDBBatchError, VikingDBHook

    hook = VikingDBHook()
    # Set up before the clock starts, as the others are: the SDK's constructor imports
    # everything and pings; the template imports requests and volcengine first.
    hook.ping()
    failed = 0
    started, cpu = time.perf_counter(), time.process_time()
    try:
        hook.delete(ids, collection_name=collection)
    except VikingDBBatchError as exc:
        failed = len(exc.failed_batches)
    except VikingDBError:
        failed = -1
    return {"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu, "failed": failed}


CLIENTS = {"template": run_template, "sdk": run_sdk, "hook": run_hook}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("client", choices=sorted(CLIENTS))
    parser.add_argument("--url", required=True)
    parser.add_argument("--ids", type=int, required=True)
    parser.add_argument("--collection", default="bench")
    args = parser.parse_args()
    ids = make_ids(args.ids)
    result = CLIENTS[args.client](args.url, args.collection, ids)
    result["batches"] = -(-len(ids) // BATCH)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
