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


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    e = _err("[nats\nurls = []")
    assert e.key == "" and e.problem.startswith("invalid TOML") and str(e).startswith("gw.toml: invalid TOML")
    with pytest.raises(ConfigError) as ei:
        load_config(tmp_path / "absent.toml")
    assert ei.value.path == str(tmp_path / "absent.toml") and "cannot read" in ei.value.problem
