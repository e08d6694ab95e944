"""The package list in pyproject.toml names every package, so a wheel install is complete."""

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from conftest import REPO

DATA_PACKAGES = {"cfn._migrations", "cfn._migrations.rollback", "cfn._agents", "cfn._worktree"}


def test_every_package_is_listed():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(REPO).parts)
               for p in (REPO / "cfn").rglob("__init__.py")}
    assert set(config["packages"]) == on_disk | DATA_PACKAGES


def test_data_packages_hold_their_files():
    assert sorted(p.name for p in (REPO / "migrations" / "rollback").glob("*.sql")) == \
        sorted(p.name for p in (REPO / "migrations").glob("*.sql"))
    assert list((REPO / "agents").glob("*.toml"))
