"""The package list in pyproject.toml names every package, so a wheel install is complete."""

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from conftest import REPO

DATA_PACKAGES = {"cfn._migrations", "cfn._migrations.rollback", "cfn._agents", "cfn._workers",
                 "cfn._worktree", "cfn._skills"}


def test_every_package_is_listed():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(REPO).parts)
               for p in (REPO / "cfn").rglob("__init__.py")}
    assert set(config["packages"]) == on_disk | DATA_PACKAGES


def test_data_packages_hold_their_files():
    assert sorted(p.name for p in (REPO / "migrations" / "rollback").glob("*.sql")) == \
        sorted(p.name for p in (REPO / "migrations").glob("*.sql"))
    assert list((REPO / "agents").glob("*.toml"))


def test_a_wheel_ships_the_skills_with_their_skill_files(tmp_path):
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path),
                    str(REPO)], check=True, capture_output=True)
    names = zipfile.ZipFile(next(tmp_path.glob("cfn-*.whl"))).namelist()
    for skill in ("redis-coordination", "cfn-agent-spawning", "cfn-loop-orchestration"):
        assert f"cfn/_skills/{skill}/SKILL.md" in names
    assert "cfn/_skills/redis-coordination/signal.sh" in names
