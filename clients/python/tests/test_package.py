"""The package as installed: its event types are current with schemas/event.json (a drift test,
like the Rust side's schema tests), it carries its type information, and passes mypy --strict."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import offstage_client

PACKAGE = Path(__file__).resolve().parents[1]


def generator() -> ModuleType:
    path = PACKAGE / "scripts" / "generate_types.py"
    spec = importlib.util.spec_from_file_location("generate_types", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_event_types_match_schemas_event_json() -> None:
    generate = generator()
    schema = json.loads(generate.SCHEMA.read_text(encoding="utf-8"))
    expected = generate.render(schema)
    if generate.MODULE.read_text(encoding="utf-8") != expected:
        generate.MODULE.write_text(expected, encoding="utf-8")
        raise AssertionError(
            "src/offstage_client/_event_types.py was stale and has been regenerated from "
            "schemas/event.json: review it, bump the package version, and commit it"
        )
    assert offstage_client.SCHEMA_VERSION == generate.schema_version(schema), (
        "the installed package was built from another schema: reinstall it (scripts/client does)"
    )


def test_the_installed_package_is_typed_and_passes_mypy_strict() -> None:
    installed = Path(offstage_client.__file__).parent
    assert (installed / "py.typed").is_file(), f"no py.typed in {installed}"
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--python-version", "3.10",
         str(PACKAGE / "src" / "offstage_client")],
        capture_output=True, text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_pip_installs_it_with_the_pipecat_extra_into_a_fresh_venv(tmp_path: Path) -> None:
    """What a user runs: `pip install ./clients/python[pipecat]` in a new virtualenv, with pip's
    own build isolation and resolver (hatchling and every dependency fetched from the package
    index, through pip's cache). The adapter must then import with the pipecat it pulled in."""
    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    installed = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         f"{PACKAGE}[pipecat]"],
        capture_output=True, text=True, timeout=900,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    checked = subprocess.run(
        [python, "-c", "import offstage_client, offstage_client.pipecat as p, pipecat; "
         "print(offstage_client.__version__, offstage_client.SCHEMA_VERSION)"],
        capture_output=True, text=True, timeout=120,
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.split() == [offstage_client.__version__, offstage_client.SCHEMA_VERSION]
    consistent = subprocess.run([python, "-m", "pip", "check"], capture_output=True, text=True)
    assert consistent.returncode == 0, consistent.stdout
