"""kcat (Debian's, on librdkafka 2.0.2) against sluice: metadata, every codec, groups.

librdkafka before 2.2 mis-skips tagged fields, so this is the client that catches a
response carrying a tagged field it should not.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from support import unique_name

KCAT_TIMEOUT_SECS = 60


def kcat(bootstrap: str, *args: str, stdin: str | None = None) -> str:
    assert shutil.which("kcat"), "kcat is missing: scripts/test installs it (apt-get install kcat)"
    done = subprocess.run(
        ["kcat", "-b", bootstrap, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=KCAT_TIMEOUT_SECS,
        check=False,
    )
    assert done.returncode == 0, f"kcat {' '.join(args)} failed: {done.stderr}"
    return done.stdout


def test_kcat_lists_metadata_with_the_broker_and_an_auto_created_topic(module_broker):
    topic = unique_name("kcat-meta")
    out = kcat(module_broker.bootstrap, "-L", "-t", topic)
    assert f"broker 1 at {module_broker.bootstrap}" in out
    assert f'topic "{topic}" with 1 partitions' in out


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_kcat_round_trips_records_with_each_codec(module_broker, codec):
    topic = unique_name(f"kcat-{codec}")
    lines = [f"key-{i}:value-{i}" for i in range(1000)]
    kcat(module_broker.bootstrap, "-P", "-t", topic, "-K", ":", "-z", codec, stdin="\n".join(lines) + "\n")
    out = kcat(module_broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-f", "%o %k:%s\n")
    got = [line.split(" ", 1) for line in out.splitlines()]
    assert [int(offset) for offset, _ in got] == list(range(1000))
    assert [record for _, record in got] == lines


def test_kcat_consumer_group_reads_everything_and_commits(module_broker):
    topic = unique_name("kcat-group")
    group = unique_name("kcat-g")
    kcat(module_broker.bootstrap, "-P", "-t", topic, stdin="".join(f"v{i}\n" for i in range(50)))
    out = kcat(module_broker.bootstrap, "-G", group, "-o", "beginning", "-e", "-f", "%s\n", topic)
    assert sorted(out.split()) == sorted(f"v{i}" for i in range(50))
    # The group committed its position: a second run from the stored offset reads nothing.
    kcat(module_broker.bootstrap, "-P", "-t", topic, stdin="after\n")
    again = kcat(module_broker.bootstrap, "-G", group, "-e", "-f", "%s\n", topic)
    assert again.split() == ["after"]
