"""Start-up configuration (SPEC section 2): every flush policy serves produce, and a bad setting
stops start-up with a message naming it."""

import os
import subprocess
import tempfile

import pytest

from clients import consume_to_end, create_topic, produce_all
from conftest import free_port, server_binary


@pytest.mark.parametrize("flush", ["group", "os", "interval:50"])
def test_every_flush_policy_acknowledges_and_serves_records(start_server, flush):
    server = start_server(f"flush-{flush.replace(':', '-')}", CHRONIK_FLUSH=flush)
    create_topic(server, "t")

    produce_all(server, "t", [(None, b"%d" % i, 0) for i in range(100)])

    assert [m.value() for m in consume_to_end(server, "t", [0])] == [b"%d" % i for i in range(100)]


@pytest.mark.parametrize(
    "setting,value",
    [
        ("CHRONIK_FLUSH", "sometimes"),
        ("CHRONIK_KAFKA_PORT", "not-a-port"),
        ("CHRONIK_BIND_ADDR", "nowhere"),
        ("CHRONIK_AUTO_CREATE_TOPICS", "perhaps"),
        ("CHRONIK_LOG_MAINTENANCE_MS", "-1"),
    ],
)
def test_a_bad_setting_stops_start_up_naming_it(setting, value):
    with tempfile.TemporaryDirectory() as data_dir:
        env = dict(os.environ)
        env.update(
            {
                "CHRONIK_DATA_DIR": data_dir,
                "CHRONIK_KAFKA_PORT": str(free_port()),
                "CHRONIK_BIND_ADDR": "127.0.0.1",
                "NO_COLOR": "1",
                setting: value,
            }
        )
        result = subprocess.run(
            [server_binary(), "start"], env=env, capture_output=True, timeout=20
        )

    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode != 0, f"started with {setting}={value}:\n{output}"
    assert setting in output, f"the error should name {setting}:\n{output}"
