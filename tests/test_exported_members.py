"""civicchat's top-level API: what ``__all__`` promises is there, documented, sorted and cheap."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import types

import pytest

import civicchat


def test_all_is_sorted() -> None:
    assert civicchat.__all__ == sorted(civicchat.__all__)
    assert len(set(civicchat.__all__)) == len(civicchat.__all__)


def test_every_exported_name_is_importable_and_documented() -> None:
    undocumented = []
    for name in civicchat.__all__:
        member = getattr(civicchat, name)
        exec(f"from civicchat import {name}", {})
        if name == "__version__":
            assert isinstance(member, str)
        elif not (inspect.getdoc(member) or "").strip():
            undocumented.append(name)
    assert not undocumented


def test_every_public_name_of_the_package_is_in_all() -> None:
    # As httpx does: nothing public reaches the namespace without being listed (names the lazy
    # loader has cached count too, so this runs after a full import).
    for name in civicchat.__all__:
        getattr(civicchat, name)
    public = {
        name
        for name, value in vars(civicchat).items()
        if not name.startswith("_")
        and name != "annotations"  # from __future__
        and not isinstance(value, types.ModuleType)  # submodules imported along the way
    }
    assert public == set(civicchat.__all__) - {"__version__"}
    assert set(dir(civicchat)) >= set(civicchat.__all__)


def test_the_exports_are_the_objects_of_their_home_modules() -> None:
    from civicchat.keywords import KeywordEngine
    from civicchat.service.app import create_app
    from civicchat.storage import open_store

    assert civicchat.KeywordEngine is KeywordEngine
    assert civicchat.create_app is create_app
    assert civicchat.open_store is open_store
    assert issubclass(civicchat.CaseError, civicchat.CivicchatError)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        civicchat.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018


def test_import_civicchat_stays_light() -> None:
    heavy = ["sqlalchemy", "starlette", "pydantic", "httpx", "rapidfuzz", "jinja2", "yaml"]
    code = f"import sys, civicchat; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_tree_drawn_in_exceptions_names_every_error_class() -> None:
    import civicchat.cases.errors
    import civicchat.exceptions

    drawn = (civicchat.exceptions.__doc__ or "").replace("\n", " \n")
    for module in (civicchat.exceptions, civicchat.cases.errors):
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, type) and issubclass(value, BaseException):
                assert re.search(rf"^[ │├└─]*{name} ", drawn, re.MULTILINE), name
