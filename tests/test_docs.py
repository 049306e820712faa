"""The docs stay true: their examples parse and the README names every table the warehouse defines."""

import re
from pathlib import Path

from synthdata.augment import AugmentPolicy
from synthdata.io.warehouse import SCHEMA

ROOT = Path(__file__).resolve().parents[1]


def test_augmentation_doc_example_is_a_valid_policy():
    text = (ROOT / "docs" / "augmentation.md").read_text()
    policy = AugmentPolicy.from_yaml(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))
    assert {op.op for op in policy.ops} >= {"mixup", "cutmix", "random_erasing", "color_jitter"}


def test_readme_documents_every_table_and_opens_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    from synthdata.io.warehouse import VIEWS

    for table in [*SCHEMA, *VIEWS]:
        assert f"`{table}`" in readme, table
    first_block = readme.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "\nmake test\n" in ci


def test_workspace_yaml_and_pyproject_load_the_code_location(tmp_path):
    import os
    import subprocess
    import sys

    dagster = str(Path(sys.executable).parent / "dagster")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "SYNTHDATA_HOME": str(tmp_path / "home")}
    for args in (["-w", "workspace.yaml"], []):  # [] = [tool.dagster] in pyproject.toml
        out = subprocess.run([dagster, "definitions", "validate", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0 and "Validation successful for code location synthdata" in out.stderr + out.stdout, out.stderr[-2000:]
