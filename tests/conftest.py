import os

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
