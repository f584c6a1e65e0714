import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def need():
    """`need(ok, why)`: skip when a prerequisite (shared data, an extra) is missing, but fail
    under CI, which must run every claim."""
    def check(ok: bool, why: str) -> None:
        if not ok:
            if os.environ.get("CI"):
                pytest.fail(f"{why} (CI must run this test)")
            pytest.skip(why)
    return check


@pytest.fixture(scope="session")
def faceres_dir(need):
    """faceres's two files (CI unpacks them with .ci/faceres.sh and names the folder in
    PRIVACY_ANON_FACERES)."""
    folder = os.environ.get("PRIVACY_ANON_FACERES", "")
    need(bool(folder) and Path(folder, "faceres.bin").is_file(),
         "PRIVACY_ANON_FACERES does not name faceres's folder (bash .ci/faceres.sh DIR)")
    return Path(folder)
