"""TOML configuration: the example parses, defaults, and every error kind names file, key path and problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalyst_smpp.config import Config, ConfigError, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "catalyst-smpp.toml"


def test_example_config_loads() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.nats.urls == () and cfg.database.dsn == ""  # embedded by default
    assert cfg.node.state_dir == EXAMPLE.parent / "state"  # relative to the file
    assert cfg.nats.streams.mt.duplicate_window == 120.0 and cfg.nats.kv.ttl == 3 * 86400
    assert cfg.listeners[0].port == 2775 and cfg.listeners[0].tls_cert is None
    assert cfg.limits.max_pdu_size == 64 * 1024 and cfg.limits.inactivity_timeout == 120.0
    assert cfg.operators[0].name == "example-op" and cfg.partners[0].allowed_ips == ("192.0.2.0/24",)


def test_empty_config_is_all_defaults() -> None:
    assert parse_config("") == Config()


def test_node_without_connectors() -> None:
    assert Config().node.connectors is True
    assert parse_config("[node]\nconnectors = false").node.connectors is False
    e = _err("[node]\nconnectors = 0")
    assert e.key == "node.connectors" and "boolean" in e.problem


def test_values_and_units() -> None:
    cfg = parse_config(
        """
        [nats]
        urls = ["nats://a:4222", "nats://b:4222"]
        publish_timeout = "250ms"
        [nats.streams.mt]
        backoff = [1, "5s", "1m"]
        max_bytes = "1GiB"
        [[listeners]]
        port = 2775
        [[listeners]]
        port = 3550
        tls_cert = "/etc/c.crt"
        tls_key = "k.key"
        """,
        base_dir=Path("/etc/catalyst"),
    )
    assert cfg.nats.urls == ("nats://a:4222", "nats://b:4222")
    assert cfg.nats.publish_timeout == 0.25
    assert cfg.nats.streams.mt.backoff == (1.0, 5.0, 60.0) and cfg.nats.streams.mt.max_bytes == 1024**3
    assert cfg.listeners[1].tls_cert == Path("/etc/c.crt") and cfg.listeners[1].tls_key == Path(
        "/etc/catalyst/k.key"
    )


def _err(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as ei:
        parse_config(text, source="gw.toml")
    return ei.value


def test_wrong_type() -> None:
    e = _err('[[listeners]]\nport = 2775\n[[listeners]]\nport = "x"\n')
    assert (e.path, e.key, e.problem) == ("gw.toml", "listeners[1].port", "expected an integer, got a string")
    assert str(e) == "gw.toml: listeners[1].port: expected an integer, got a string"
    assert _err("[database]\nmigrate_on_start = 1").problem == "expected a boolean, got an integer"
    assert _err('[nats]\nurls = "nats://x"').key == "nats.urls"
    assert _err("[nats]\nurls = [1]").key == "nats.urls[0]"
    assert _err("nats = 3").problem == "expected a table, got an integer"
    assert _err("[metrics]\nport = true").problem == "expected an integer, got a boolean"


def test_out_of_range() -> None:
    e = _err("[[listeners]]\nport = 70000")
    assert e.key == "listeners[0].port" and "out of range (maximum 65535)" in e.problem
    e = _err("[nats]\nreplicas = 0")
    assert e.key == "nats.replicas" and "minimum 1" in e.problem


def test_bind_and_connection_limits() -> None:
    text = (
        '[limits]\nmax_connections = 500\nmax_connections_per_address = 0\nbind_fail_delay = "1500ms"\n'
        'bind_lockout_max = "10m"\nbind_hash_threads = 1\n'
    )
    lim = parse_config(text).limits
    assert (lim.max_connections, lim.max_connections_per_address, lim.bind_fail_delay) == (500, 0, 1.5)
    assert (lim.bind_lockout_max, lim.bind_hash_threads, lim.bind_free_failures) == (600.0, 1, 3)
    e = _err("[limits]\nbind_hash_threads = 0")
    assert (e.path, e.key) == ("gw.toml", "limits.bind_hash_threads") and "minimum 1" in e.problem
    assert _err('[limits]\nbind_fail_delay = "2 minutes"').key == "limits.bind_fail_delay"
    assert _err("[limits]\nmax_connections = -1").key == "limits.max_connections"


def test_unknown_key_with_suggestion() -> None:
    e = _err("[nats]\nreplica = 3")
    assert e.key == "nats.replica" and e.problem == "unknown key (did you mean 'replicas'?)"
    e = _err("[[listeners]]\nprot = 1")
    assert e.key == "listeners[0].prot" and "did you mean 'port'" in e.problem
    e = _err("[zzz]\na = 1")
    assert e.key == "zzz" and e.problem == "unknown key"
    assert _err("[nats.streams.mtt]\nmax_age = 1").problem == "unknown key (did you mean 'mt'?)"


def test_bad_choice() -> None:
    e = _err('[logging]\nlevel = "INFOO"')
    assert e.key == "logging.level" and "did you mean 'INFO'" in e.problem
    e = _err('[[partners]]\nsystem_id = "a"\npassword = "b"\nreceipt_date_digits = 11')
    assert e.key == "partners[0].receipt_date_digits" and "not one of 10, 12" in e.problem


def test_bad_duration_and_size() -> None:
    assert "not a duration" in _err('[nats]\npublish_timeout = "5 parsecs"').problem
    assert "not a size" in _err('[limits]\nmax_pdu_size = "big"').problem
    assert _err('[nats]\npublish_timeout = "1ms"').problem.endswith("out of range (minimum 0.05)")


def test_missing_required_key() -> None:
    e = _err('[[operators]]\nname = "op"\nhost = "h"\nsystem_id = "s"')
    assert (e.key, e.problem) == ("operators[0].port", "required key is missing")


def test_cross_field_rules() -> None:
    e = _err('[[listeners]]\nport = 1\ntls_cert = "c"')
    assert e.key == "listeners[0].tls_key"
    e = _err("[[listeners]]\nport = 1\n[[listeners]]\nport = 1")
    assert e.key == "listeners[1].port" and "listeners[0]" in e.problem
    e = _err('[[partners]]\nsystem_id = "a"\npassword = "123456789"')
    assert e.key == "partners[0].password" and "8" in e.problem
    e = _err('[[partners]]\nsystem_id = "a"\npassword = "x"\n[[partners]]\nsystem_id = "a"\npassword = "y"')
    assert e.key == "partners[1].system_id" and "duplicate" in e.problem


_OP = '[[operators]]\nname = "op"\nhost = "h"\nport = 2775\nsystem_id = "s"\n'


def test_operator_temporary_statuses() -> None:
    assert load_config(EXAMPLE).operators[0].temporary_statuses == ()
    assert parse_config(_OP).operators[0].temporary_statuses == ()
    # TOML integers (hex literals too) or hex strings with 0x; kept in the order given
    cfg = parse_config(_OP + 'temporary_statuses = [0x4C1, "0x401", 1279, " 0X4a0 "]')
    assert cfg.operators[0].temporary_statuses == (0x4C1, 0x401, 0x4FF, 0x4A0)
    for value, problem in (
        ('["401"]', "'401' is not a command_status in hex (write it with 0x, such as 0x401)"),
        ('["0x4zz"]', "'0x4zz' is not a command_status in hex (write it with 0x, such as 0x401)"),
        ("[0]", "0 is ESME_ROK, not an error status"),
        ('["0x0"]', "'0x0' is ESME_ROK, not an error status"),
        ("[-1]", "-1 is out of range (0x1 to 0x7FFFFFFF)"),
        ("[0x80000000]", "2147483648 is out of range (0x1 to 0x7FFFFFFF)"),
        ("[1.5]", 'expected a command_status (an integer or a hex string such as "0x401"), got a number'),
        ("[true]", 'expected a command_status (an integer or a hex string such as "0x401"), got a boolean'),
    ):
        e = _err(_OP + f"temporary_statuses = {value}")
        assert (e.key, e.problem) == ("operators[0].temporary_statuses[0]", problem), value
    e = _err(_OP + 'temporary_statuses = "0x401"')
    assert (e.key, e.problem) == ("operators[0].temporary_statuses", "expected an array, got a string")
    e = _err(_OP + 'temporary_statuses = [0x401, 0x402, "0x401"]')
    assert e.key == "operators[0].temporary_statuses[2]"
    assert e.problem == "0x401 is listed twice (also temporary_statuses[0])"


def test_operator_receipt_and_tls_keys(tmp_path: Path) -> None:
    op = load_config(EXAMPLE).operators[0]
    assert (op.receipt_parts, op.receipt_request, op.tls_ca_file, op.tls_server_name) == (
        "all",
        "final",
        None,
        "",
    )
    cfg = parse_config(
        _OP + 'receipt_parts = "last"\nreceipt_request = "as_partner"\ntls_ca_file = "ca.pem"\n'
        'tls_server_name = "smsc.example"',
        base_dir=tmp_path,
    )
    op = cfg.operators[0]
    assert (op.receipt_parts, op.receipt_request) == ("last", "as_partner")
    assert (op.tls_ca_file, op.tls_server_name) == (tmp_path / "ca.pem", "smsc.example")
    e = _err(_OP + 'receipt_parts = "lst"')
    assert (e.key, e.problem) == (
        "operators[0].receipt_parts",
        "'lst' is not one of 'all', 'last' (did you mean 'last'?)",
    )
    e = _err(_OP + 'receipt_request = "partner"')
    assert e.key == "operators[0].receipt_request" and "'final', 'as_partner'" in e.problem


def test_operator_receipts_by_text() -> None:
    assert load_config(EXAMPLE).operators[0].receipts_by_text is False
    assert parse_config(_OP).operators[0].receipts_by_text is False
    assert parse_config(_OP + "receipts_by_text = true").operators[0].receipts_by_text is True
    with pytest.raises(ConfigError) as e:
        parse_config(_OP + 'receipts_by_text = "yes"')
    assert e.value.key == "operators[0].receipts_by_text"


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    e = _err("[nats\nurls = []")
    assert e.key == "" and e.problem.startswith("invalid TOML") and str(e).startswith("gw.toml: invalid TOML")
    with pytest.raises(ConfigError) as ei:
        load_config(tmp_path / "absent.toml")
    assert ei.value.path == str(tmp_path / "absent.toml") and "cannot read" in ei.value.problem


# --------------------------------------------------------------------------- workers and node numbers


def test_workers_and_node_number_keys() -> None:
    from catalyst_smpp.config import cpu_count, resolve_workers

    assert Config().node.workers == 1 and Config().node.number == -1
    cfg = parse_config("[node]\nworkers = 4\nnumber = 32")
    assert (cfg.node.workers, cfg.node.number) == (4, 32)
    assert parse_config("[node]\nworkers = 'auto'").node.workers == 0
    assert parse_config("[node]\nworkers = 'AUTO'").node.workers == 0
    assert resolve_workers(0) == cpu_count() >= 1 and resolve_workers(3) == 3
    e = _err("[node]\nworkers = 'many'")
    assert e.key == "node.workers" and 'an integer or "auto"' in e.problem
    e = _err("[node]\nworkers = -1")
    assert e.key == "node.workers" and "out of range" in e.problem
    e = _err("[node]\nnumber = 1024")
    assert e.key == "node.number" and "maximum 1023" in e.problem
    example = load_config(EXAMPLE)
    assert (example.node.workers, example.node.number) == (1, -1)


def test_workers_need_a_node_number_block_that_fits() -> None:
    parse_config("[node]\nworkers = 4\nnumber = 1020")  # 1020..1023
    e = _err("[node]\nworkers = 4\nnumber = 1021")
    assert e.key == "node.number"
    assert "1021 + 4 workers - 1 = 1024 is above 1023" in e.problem and "at most 1020" in e.problem


def test_workers_need_metrics_ports_and_not_reuse_port() -> None:
    # workers share the socket their parent binds: reuse_port is accepted (older files) and means nothing
    parse_config("[node]\nworkers = 2\n[[listeners]]\nport = 2775\nreuse_port = false")
    e = _err("[node]\nworkers = 3\n[metrics]\nport = 65534")
    assert e.key == "metrics.port" and "metrics.port + k" in e.problem
    parse_config("[node]\nworkers = 3\n[metrics]\nport = 0")  # no endpoints at all


def test_check_workers_for_a_count_given_at_run_time() -> None:
    from catalyst_smpp.config import check_workers

    cfg = parse_config("[node]\nnumber = 1000\nworkers = 'auto'")  # auto: checked when resolved
    check_workers(cfg, 24, "f.toml")
    with pytest.raises(ConfigError) as ei:
        check_workers(cfg, 25, "f.toml")
    assert str(ei.value).startswith("f.toml: node.number: 1000 + 25 workers - 1 = 1024 is above 1023")
    with pytest.raises(ConfigError) as ei:
        check_workers(Config(), 1025, "f.toml")
    assert ei.value.key == "node.workers"


def test_worker_node_numbers() -> None:
    from catalyst_smpp.gateway.ids import node_number, worker_base, worker_node_number

    # an explicit base: worker k uses base + k; hosts with blocks h * 32 never share a number
    assert [worker_node_number(worker_base("any", 64, 4), k) for k in range(4)] == [64, 65, 66, 67]
    blocks = [
        {worker_node_number(worker_base(f"h{h}", h * 32, n), k) for k in range(n)}
        for h, n in enumerate((32, 8, 32, 1))
    ]
    assert sum(len(b) for b in blocks) == len(set().union(*blocks)) == 73
    with pytest.raises(ValueError):
        worker_base("any", 1021, 4)
    # derived from the node id (numbered or hashed), moved down so the block fits
    assert worker_base("gw-7", -1, 4) == 7 == node_number("gw-7")
    assert worker_base("gw-1022", -1, 4) == 1020
    assert worker_base("gw-1022", -1, 1) == 1022  # a single process: unchanged
    with pytest.raises(ValueError):
        worker_node_number(1020, 4)
