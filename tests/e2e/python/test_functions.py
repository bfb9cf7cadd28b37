"""Consumer functions under Lambda's own runtime interface clients, fed by `sluice up`.

The handlers are written the way the seed's consumer is: log each record's decoded value and
return "Successfully processed N records." They run unchanged under PyPI `awslambdaric` and
npm `aws-lambda-ric` (installed by scripts/test into .venv and .node-ric), which talk to
sluice's Lambda Runtime API exactly as they talk to Lambda's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import confluent_kafka

from conftest import REPO_ROOT
from support import Up, ck_producer, wait_until

PY_HANDLER = '''
import base64

def handler(event, context):
    records = [r for batch in event["records"].values() for r in batch]
    for record in records:
        print("value:", base64.b64decode(record["value"]).decode())
    return f"Successfully processed {len(records)} records."
'''

NODE_HANDLER = '''
exports.handler = async (event) => {
  let count = 0;
  for (const batch of Object.values(event.records)) {
    for (const record of batch) {
      count += 1;
      console.log("value:", Buffer.from(record.value, "base64").toString());
    }
  }
  return `Successfully processed ${count} records.`;
};
'''

NODE_RIC = REPO_ROOT / ".node-ric" / "node_modules" / ".bin" / "aws-lambda-ric"


def solution(name: str, command: list[str], handler: str) -> str:
    argv = ", ".join(f'"{part}"' for part in command)
    return f'''
[broker]
listeners = "PLAINTEXT://127.0.0.1:0"

[[topic]]
name = "MyTopic"
partitions = 2

[[function]]
name = "{name}"
topics = ["MyTopic"]
runtime = "lambda"
command = [{argv}]
handler = "{handler}"
code_dir = "."
starting_position = "TRIM_HORIZON"
batch_size = 10
maximum_batching_window_in_seconds = 0.2
'''


def committed(bootstrap: str, group: str) -> int:
    consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        partitions = [confluent_kafka.TopicPartition("MyTopic", p) for p in (0, 1)]
        offsets = consumer.committed(partitions, timeout=10)
        return sum(max(tp.offset, 0) for tp in offsets)
    finally:
        consumer.close()


def run_seed_consumer(workdir: Path, name: str, command: list[str], handler: str):
    up = Up(workdir, solution(name, command, handler))
    try:
        producer = ck_producer(up.bootstrap)
        values = [f"record-{i}" for i in range(40)]
        for value in values:
            producer.produce("MyTopic", value=value.encode())
        assert producer.flush(30) == 0
        wait_until(lambda: committed(up.bootstrap, f"sluice-function-{name}") == 40, 90,
                   f"{name}: 40 records committed\n{up.log(name)}")
        log = up.log(name)
        for value in values:
            assert f"value: {value}" in log, f"{value} logged by the handler\n{log}"
        assert log.count("INIT_START") == 1 or log.count("INIT_START") == 2, (
            f"the process is started once (per concurrent partition) and reused\n{log}")
        assert "ERROR" not in log, log
    finally:
        up.stop()


def test_a_python_handler_runs_unchanged_under_awslambdaric(tmp_path):
    (tmp_path / "app.py").write_text(PY_HANDLER)
    run_seed_consumer(tmp_path, "py-consumer", [sys.executable, "-m", "awslambdaric", "app.handler"],
                      "app.handler")


def test_a_node_handler_runs_unchanged_under_aws_lambda_ric(tmp_path):
    assert NODE_RIC.exists(), f"scripts/test installs npm aws-lambda-ric into {NODE_RIC.parent}"
    (tmp_path / "index.js").write_text(NODE_HANDLER)
    run_seed_consumer(tmp_path, "node-consumer", [str(NODE_RIC), "index.handler"], "index.handler")
