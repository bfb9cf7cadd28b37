"""Delivery streams (pattern 3) through `sluice up`, checked with tools nobody here wrote.

- the seed's pattern 3: topic -> builtin `deliver` function -> delivery stream -> gzip objects
  under `data/year=/month=/day=/hour=/` in the local folder;
- an S3 destination on a real S3-compatible server (moto's, started here on loopback), read
  back through the S3 API with boto3;
- boto3's Firehose client against sluice's Firehose API (`AWS_ENDPOINT_URL_FIREHOSE`), with
  Firehose's errors for every limit;
- every compression format, read by the standard tools (gzip, unzip, python-snappy);
- Parquet conversion read by pyarrow, broken JSON under the error prefix while the stream
  keeps going, and dynamic partitioning.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import re
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3
import botocore.exceptions
import pyarrow.parquet as pq
import pytest
import snappy
from snappy import snappy_formats

from support import Up, ck_producer, wait_until

WAIT_SECS = 60.0
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def objects(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def produce(bootstrap: str, topic: str, values: list[bytes]):
    producer = ck_producer(bootstrap, **{"linger.ms": 5})
    for value in values:
        producer.produce(topic, value)
    assert producer.flush(30) == 0, "every record acknowledged"


def gunzip_lines(path: Path) -> list[bytes]:
    return gzip.decompress(path.read_bytes()).splitlines()


def header(listen_topic: str = "MyTopic", partitions: int = 2) -> str:
    return f'''
[broker]
listeners = "PLAINTEXT://127.0.0.1:0"
"group.initial.rebalance.delay.ms" = 0

[aws_api]
listen = "127.0.0.1:0"

[[topic]]
name = "{listen_topic}"
partitions = {partitions}
'''


@pytest.fixture
def up_factory(tmp_path):
    running = []

    def start(solution: str, env: dict | None = None) -> Up:
        up = Up(tmp_path, solution, env)
        running.append(up)
        return up

    yield start
    for up in running:
        up.stop()


SEED = header() + '''
[[delivery_stream]]
name = "seed-stream"
prefix = "data/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/"
error_output_prefix = "errors/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/!{firehose:error-output-type}/"
buffering_hints = { size_in_mbs = 5, interval_in_seconds = 1 }
compression_format = "GZIP"

[[function]]
name = "forwarder"
topics = ["MyTopic"]
runtime = "builtin"
handler = "deliver"
starting_position = "TRIM_HORIZON"
batch_size = 50
maximum_batching_window_in_seconds = 0.2
'''


def test_seed_pattern_3_topic_to_function_to_delivery_stream_to_gzip_objects(up_factory, tmp_path):
    up = up_factory(SEED)
    values = [json.dumps({"id": i, "event": "click"}).encode() for i in range(200)]
    produce(up.bootstrap, "MyTopic", values)
    root = tmp_path / "data" / "objects" / "seed-stream"

    def delivered():
        lines = [line for path in objects(root) for line in gunzip_lines(path)]
        return lines if len(lines) >= len(values) else None

    lines = wait_until(delivered, WAIT_SECS, "the function's records in gzip objects")
    # The deliver function sends each record's envelope, one JSON line, as the seed's does.
    envelopes = [json.loads(line) for line in lines]
    decoded = sorted(base64.b64decode(e["value"]) for e in envelopes)
    assert decoded == sorted(values)
    assert {e["topic"] for e in envelopes} == {"MyTopic"}
    for path in objects(root):
        key = path.relative_to(root).as_posix()
        assert re.fullmatch(
            r"data/year=\d{4}/month=\d\d/day=\d\d/hour=\d\d/"
            rf"seed-stream-1-\d{{4}}-\d\d-\d\d-\d\d-\d\d-\d\d-{UUID}\.gz", key), key
        # Readable by the standard tool too.
        subprocess.run(["gzip", "-t", str(path)], check=True)


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3-compatible server on a loopback port, for the module's tests."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"moto-{port}.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")

    def ready():
        try:
            s3.list_buckets()
            return True
        except Exception:
            return None

    try:
        wait_until(ready, 30, "moto's S3 server")
        yield {"endpoint": endpoint, "client": s3, "env": {**env, "AWS_ENDPOINT_URL_S3": endpoint}}
    finally:
        server.terminate()
        server.wait(10)
        log.close()


def test_seed_pattern_3_with_an_s3_destination_on_a_real_s3_compatible_server(
        up_factory, s3_server):
    s3 = s3_server["client"]
    s3.create_bucket(Bucket="lake")
    # The seed's pipeline again (topic -> deliver function -> stream), publishing to S3.
    solution = SEED.replace('name = "seed-stream"\n',
                            'name = "seed-stream"\ndestination_url = "s3://lake/raw"\n')
    up = up_factory(solution, env=s3_server["env"])
    values = [json.dumps({"id": i}).encode() for i in range(300)]
    produce(up.bootstrap, "MyTopic", values)

    def delivered():
        listed = s3.list_objects_v2(Bucket="lake", Prefix="raw/").get("Contents", [])
        lines = []
        for item in listed:
            body = s3.get_object(Bucket="lake", Key=item["Key"])["Body"].read()
            lines += gzip.decompress(body).splitlines()
        return (listed, lines) if len(lines) >= len(values) else None

    listed, lines = wait_until(delivered, WAIT_SECS, "records in S3 objects")
    decoded = sorted(base64.b64decode(json.loads(line)["value"]) for line in lines)
    assert decoded == sorted(values), "every record once"
    for item in listed:
        assert re.fullmatch(
            r"raw/data/year=\d{4}/month=\d\d/day=\d\d/hour=\d\d/"
            rf"seed-stream-1-\d{{4}}-\d\d-\d\d-\d\d-\d\d-\d\d-{UUID}\.gz", item["Key"]), item["Key"]


DIRECT = header() + '''
[[delivery_stream]]
name = "direct"
buffering_hints = { interval_in_seconds = 1 }
append_delimiter_to_record = true

[[delivery_stream]]
name = "from-topic"
source_topic = "MyTopic"
'''


def firehose_client(up: Up, monkeypatch):
    # The SDK's standard endpoint override, as code written for AWS would be configured.
    monkeypatch.setenv("AWS_ENDPOINT_URL_FIREHOSE", up.aws_api)
    return boto3.client("firehose", region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


def test_boto3_put_record_batch_lands_in_objects(up_factory, tmp_path, monkeypatch):
    up = up_factory(DIRECT)
    firehose = firehose_client(up, monkeypatch)
    records = [json.dumps({"id": i}).encode() for i in range(1200)]
    for start in range(0, len(records), 500):
        batch = [{"Data": data} for data in records[start:start + 500]]
        response = firehose.put_record_batch(DeliveryStreamName="direct", Records=batch)
        assert response["FailedPutCount"] == 0
        assert len(response["RequestResponses"]) == len(batch)
        assert all("RecordId" in entry for entry in response["RequestResponses"])
    single = firehose.put_record(DeliveryStreamName="direct", Record={"Data": b'{"id": -1}'})
    assert single["RecordId"]
    root = tmp_path / "data" / "objects" / "direct"

    def delivered():
        lines = [line for path in objects(root) for line in gunzip_lines(path)]
        return lines if len(lines) >= len(records) + 1 else None

    lines = wait_until(delivered, WAIT_SECS, "the API's records in objects")
    assert sorted(lines) == sorted(records + [b'{"id": -1}'])

    names = firehose.list_delivery_streams()["DeliveryStreamNames"]
    assert names == ["direct", "from-topic"]
    described = firehose.describe_delivery_stream(DeliveryStreamName="direct")
    description = described["DeliveryStreamDescription"]
    assert description["DeliveryStreamStatus"] == "ACTIVE"
    assert description["DeliveryStreamType"] == "DirectPut"
    s3 = description["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert s3["BufferingHints"] == {"SizeInMBs": 5, "IntervalInSeconds": 1}
    assert s3["CompressionFormat"] == "GZIP"


def error_of(call) -> tuple[str, str]:
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        call()
    error = raised.value.response["Error"]
    return error["Code"], error["Message"]


def test_firehose_limits_get_firehoses_errors(up_factory, monkeypatch):
    up = up_factory(DIRECT)
    firehose = firehose_client(up, monkeypatch)
    code, message = error_of(lambda: firehose.put_record_batch(
        DeliveryStreamName="direct", Records=[{"Data": b"x"}] * 501))
    assert code == "ValidationException" and "500" in message
    code, message = error_of(lambda: firehose.put_record_batch(
        DeliveryStreamName="direct", Records=[{"Data": b"x" * (1000 * 1024 + 1)}]))
    assert code == "ValidationException" and "1024000" in message
    code, message = error_of(lambda: firehose.put_record_batch(
        DeliveryStreamName="direct", Records=[{"Data": b"x" * (900 * 1024)}] * 5))
    assert code == "InvalidArgumentException" and "4 MB" in message
    code, _ = error_of(lambda: firehose.put_record(
        DeliveryStreamName="nope", Record={"Data": b"x"}))
    assert code == "ResourceNotFoundException"
    code, _ = error_of(lambda: firehose.describe_delivery_stream(DeliveryStreamName="nope"))
    assert code == "ResourceNotFoundException"
    # A stream fed by a topic takes no puts, as an MSK-sourced Firehose stream.
    code, _ = error_of(lambda: firehose.put_record(
        DeliveryStreamName="from-topic", Record={"Data": b"x"}))
    assert code == "InvalidArgumentException"
    # The failed calls stored nothing; a good call after them still works.
    ok = firehose.put_record_batch(DeliveryStreamName="direct", Records=[{"Data": b"ok"}])
    assert ok["FailedPutCount"] == 0


FORMATS = {"UNCOMPRESSED": "", "GZIP": ".gz", "ZIP": ".zip", "Snappy": ".snappy",
           "HADOOP_SNAPPY": ".hsnappy"}


def read_object(path: Path, compression: str) -> bytes:
    if compression == "UNCOMPRESSED":
        return path.read_bytes()
    if compression == "GZIP":
        data = subprocess.run(["gzip", "-dc", str(path)], check=True, capture_output=True).stdout
        assert data == gzip.decompress(path.read_bytes())
        return data
    if compression == "ZIP":
        data = subprocess.run(["unzip", "-p", str(path)], check=True, capture_output=True).stdout
        with zipfile.ZipFile(path) as archive:
            assert len(archive.namelist()) == 1
        return data
    out = io.BytesIO()
    with open(path, "rb") as source:
        if compression == "Snappy":
            snappy.stream_decompress(source, out)
        else:
            snappy_formats.hadoop_stream_decompress(source, out)
    return out.getvalue()


def test_every_compression_format_is_readable_by_standard_tools(up_factory, tmp_path):
    streams = "".join(f'''
[[delivery_stream]]
name = "fmt-{name.lower().replace('_', '-')}"
source_topic = "MyTopic"
compression_format = "{name}"
buffering_hints = {{ interval_in_seconds = 1 }}
append_delimiter_to_record = true
''' for name in FORMATS)
    up = up_factory(header(partitions=1) + streams)
    # Large enough that HADOOP_SNAPPY writes several 256 KiB blocks.
    values = [json.dumps({"id": i, "pad": "y" * 200 + str(i)}).encode() for i in range(3000)]
    produce(up.bootstrap, "MyTopic", values)
    for name, extension in FORMATS.items():
        root = tmp_path / "data" / "objects" / f"fmt-{name.lower().replace('_', '-')}"

        def delivered():
            found = objects(root)
            lines = [line for path in found for line in read_object(path, name).splitlines()]
            return (found, lines) if len(lines) >= len(values) else None

        found, lines = wait_until(delivered, WAIT_SECS, f"{name} objects")
        assert sorted(lines) == sorted(values), name
        for path in found:
            assert re.search(rf"-{UUID}{re.escape(extension)}$", path.name), (name, path.name)


PARQUET = header(partitions=1) + '''
[[delivery_stream]]
name = "to-parquet"
source_topic = "MyTopic"
compression_format = "UNCOMPRESSED"
prefix = "parquet/!{timestamp:yyyy-MM-dd}/"
error_output_prefix = "errors/!{firehose:error-output-type}/"
buffering_hints = { interval_in_seconds = 1 }
record_format_conversion = { columns = [
  { name = "id", type = "bigint" },
  { name = "customer", type = "string" },
  { name = "amount", type = "double" },
  { name = "paid", type = "boolean" },
] }

[[delivery_stream]]
name = "by-customer"
source_topic = "MyTopic"
dynamic_partitioning = true
metadata_extraction_query = "{customer: .customer}"
prefix = "customer=!{partitionKeyFromQuery:customer}/!{timestamp:yyyy}/"
error_output_prefix = "errors/!{firehose:error-output-type}/"
buffering_hints = { interval_in_seconds = 1 }
append_delimiter_to_record = true
'''


def test_parquet_conversion_dynamic_partitioning_and_the_error_prefix(up_factory, tmp_path):
    up = up_factory(PARQUET)
    good = [{"id": i, "customer": f"c{i % 3}", "amount": i * 1.5, "paid": i % 2 == 0}
            for i in range(90)]
    broken = [b'{"id": 1000, "customer": "c0"', b'{"id": "not a number", "customer": "c1"}']
    values = [json.dumps(r).encode() for r in good[:45]] + broken
    values += [json.dumps(r).encode() for r in good[45:]]
    produce(up.bootstrap, "MyTopic", values)
    root = tmp_path / "data" / "objects" / "to-parquet"

    def converted():
        files = [p for p in objects(root / "parquet")]
        rows = [row for p in files for row in pq.read_table(p).to_pylist()]
        # Error objects take the stream's compression: UNCOMPRESSED with Parquet conversion.
        errors = [json.loads(line) for p in objects(root / "errors")
                  for line in p.read_bytes().splitlines()]
        return (files, rows, errors) if len(rows) >= len(good) and len(errors) >= 2 else None

    files, rows, errors = wait_until(converted, WAIT_SECS, "Parquet objects and error records")
    # Records after the broken ones were converted too: the stream kept going.
    assert sorted(rows, key=lambda r: r["id"]) == good
    assert all(p.suffix == ".parquet" for p in files)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d", p.parent.name) for p in files)
    assert sorted(base64.b64decode(e["rawData"]) for e in errors) == sorted(broken)
    assert {e["lastErrorCode"] for e in errors} == {"DataFormatConversion.MalformedData"}
    error_dirs = {p.relative_to(root).parts[:2] for p in objects(root / "errors")}
    assert error_dirs == {("errors", "format-conversion-failed")}

    # Dynamic partitioning: one folder per customer; the unparseable record goes to errors.
    by_customer = tmp_path / "data" / "objects" / "by-customer"

    def partitioned():
        per = {}
        for customer in ("c0", "c1", "c2"):
            per[customer] = [json.loads(line) for p in objects(by_customer / f"customer={customer}")
                             for line in gunzip_lines(p)]
        failed = [p for p in objects(by_customer / "errors" / "processing-failed")]
        total = sum(len(v) for v in per.values())
        return (per, failed) if total >= len(good) + 1 and failed else None

    per, failed = wait_until(partitioned, WAIT_SECS, "objects under customer=<key>/")
    for customer, records in per.items():
        assert {r["customer"] for r in records} == {customer}
    assert len(failed) >= 1
