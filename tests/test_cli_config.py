"""Configuration and the command line: lake URLs, read commands that never create a lake,
``forget --dry-run`` and its confirmation, ``--version``, help on every option, uploads that
are no MCAP. In-process (``dataloop.cli.main``): each test is one call, not one interpreter."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
from pathlib import Path

import pytest

from dataloop.cli import build_parser, main
from dataloop.fleet.uploader import upload_drive
from dataloop.ingest.hour import arrival_hours
from dataloop.lake.dryrun import DryRunStore
from dataloop.lake.local import LocalStore
from dataloop.lake.store import LakeURLError, check_lake_url, open_store
from tests.helpers import ingest_hour, upload_days


def _flat(text: str) -> str:
    """The text without whitespace (rich wraps long lines, paths included)."""
    return "".join(text.split())


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "url,says",
    [
        ("s3:/bucket/lake", "an S3 lake is s3://bucket/prefix (s3://bucket/lake?)"),
        ("s3://", "no bucket"),
        ("s3:///lake", "no bucket"),
        ("gs://bucket/lake", "unknown scheme 'gs'; allowed: s3://bucket/prefix"),
        ("s3://Bad_Bucket/x", "no S3 bucket name"),
        ("file://", "file:///path/to/lake"),
    ],
)
def test_a_bad_lake_url_is_a_clear_error(capsys, monkeypatch, tmp_path, url, says):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATALOOP_LAKE", url)
    code, out, err = _run(capsys, "drives")
    assert code != 0 and out == ""
    assert "DATALOOP_LAKE" in err and _flat(says) in _flat(err)
    assert list(tmp_path.iterdir()) == []  # no folder named "s3:" appeared
    with pytest.raises(LakeURLError):
        open_store(url)


def test_good_lake_urls_pass():
    for url in ("s3://lake-1/prefix", "s3://lake-1", "./lake", "/srv/lake", "file:///srv/lake"):
        assert check_lake_url(url) == url


@pytest.mark.parametrize(
    "args",
    [
        ["drives"],
        ["drives", "--json"],
        ["datasets"],
        ["lineage", "vehicle", "veh-1"],
        ["release", "status"],
        ["search", "a pedestrian at night"],
        ["labels", "review-export", "--out", "review"],
        ["forget", "--vehicle", "veh-1", "--dry-run"],
    ],
)
def test_a_read_command_never_creates_a_missing_lake(capsys, monkeypatch, tmp_path, args):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATALOOP_LAKE", str(tmp_path / "nope"))
    code, out, err = _run(capsys, *args)
    assert code == 2 and out == ""
    assert _flat(f"no lake at {tmp_path / 'nope'}") in _flat(err)
    assert not (tmp_path / "nope").exists()


def _lake(tmp_path: Path, make_log) -> LocalStore:
    store = LocalStore(tmp_path / "lake")
    for vehicle, drive in (("veh-1", "a"), ("veh-1", "b"), ("veh-2", "c")):
        upload_drive(store, make_log(vehicle=vehicle, drive=drive, seconds=2.0), vehicle=vehicle)
    for hour in arrival_hours(store, upload_days(store)):
        ingest_hour(store, hour)
    return store


def _fingerprint(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` (the store's own internals too), by content."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "/"
        for p in sorted(root.rglob("*"))
    }


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_forget_dry_run_says_what_would_go_and_changes_nothing(
    capsys, monkeypatch, tmp_path, make_log
):
    store = _lake(tmp_path, make_log)
    monkeypatch.setenv("DATALOOP_LAKE", str(store.root))
    before = _fingerprint(store.root)

    code, out, err = _run(capsys, "forget", "--vehicle", "veh-1", "--dry-run", "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert _fingerprint(store.root) == before
    assert plan["dry_run"] and "audit_key" not in plan
    doomed = plan["would_delete"]
    assert any(k.startswith("raw/") and "vehicle=veh-1" in k for k in doomed)
    assert not any("veh-2" in k for k in doomed)
    code, out, _ = _run(capsys, "forget", "--vehicle", "veh-1", "--dry-run")
    assert code == 0 and "nothing was changed" in out and _fingerprint(store.root) == before

    # No --yes and no terminal to ask on: refused before any work.
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    code, out, err = _run(capsys, "forget", "--vehicle", "veh-1")
    assert code == 2 and "without confirmation" in err and "--yes" in err
    assert _fingerprint(store.root) == before
    # A terminal that answers no: nothing happens either.
    monkeypatch.setattr("sys.stdin", _Terminal("n\n"))
    code, out, err = _run(capsys, "forget", "--vehicle", "veh-1")
    assert code == 2 and "not confirmed" in err and "[y/N]" in err
    assert _fingerprint(store.root) == before

    # --yes: the deletion deletes exactly what the dry run said it would.
    code, out, err = _run(capsys, "forget", "--vehicle", "veh-1", "--yes", "--json")
    assert code == 0, err
    audit = json.loads(out)
    assert audit["deleted_objects"] == plan["deleted_objects"] == len(doomed)
    assert audit["deleted_keys_sha256"] == hashlib.sha256("\n".join(doomed).encode()).hexdigest()
    assert audit["rewritten_indexes"] == plan["rewritten_indexes"]
    assert not any(store.exists(k) for k in doomed)


def test_forget_asks_on_a_terminal_and_a_yes_goes_ahead(capsys, monkeypatch, tmp_path, make_log):
    store = _lake(tmp_path, make_log)
    monkeypatch.setenv("DATALOOP_LAKE", str(store.root))
    monkeypatch.setattr("sys.stdin", _Terminal("y\n"))
    code, out, err = _run(capsys, "forget", "--vehicle", "veh-2")
    assert code == 0, err
    assert _flat("forget vehicle veh-2: delete") in _flat(err) and "audit record" in out
    assert not [i for i in store.list("raw/") if "vehicle=veh-2" in i.key]


def test_a_dry_run_store_sees_its_own_writes_and_leaves_the_lake_alone(tmp_path):
    store = LocalStore(tmp_path / "lake")
    store.put("a/1", b"one")
    store.put("a/2", b"two")
    before = _fingerprint(store.root)
    dry = DryRunStore(store)
    dry.delete("a/1")
    dry.put("a/3", b"three")
    dry.swap_pointer("p", b"x", None)
    assert [i.key for i in dry.list("a/")] == ["a/2", "a/3"]
    assert dry.get("a/3") == b"three" and dry.head("a/1") is None
    assert dry.read_pointer("p")[0] == b"x"
    assert (dry.deleted, dry.written) == ({"a/1"}, {"a/3", "p"})
    assert _fingerprint(store.root) == before


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("dataloop 0.")


def _undocumented(parser: argparse.ArgumentParser, path: str) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, child in action.choices.items():
                if not helps.get(name):
                    missing.append(f"{path} {name}")
                missing += _undocumented(child, f"{path} {name}")
        elif not action.help or action.help == argparse.SUPPRESS:
            missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_command_and_option_has_help():
    assert _undocumented(build_parser(), "dataloop") == []


def test_uploading_a_file_that_is_no_mcap_says_so(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("DATALOOP_LAKE", str(tmp_path / "lake"))
    notes = tmp_path / "drive.mcap"
    notes.write_text("not a drive log\n")
    code, out, err = _run(capsys, "fleet", "upload", str(notes), "--vehicle", "veh-1")
    assert code == 2 and out == ""
    assert _flat("is not an MCAP file") in _flat(err)
    assert not (tmp_path / "lake").exists()
