"""`feikong import`: the template, a dry run that writes nothing, the import, and a wrong file's
problems with exit status 1."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from openpyxl import load_workbook

from tests.importing.conftest import small_estate, table_counts, workbook


def feikong(*args, env):
    return subprocess.run([sys.executable, "-m", "app.cli", "import", *args], env=env,
                          text=True, capture_output=True, timeout=120)


def test_template_dry_run_then_import(engine, estate_id, database_url, tmp_path):
    env = dict(os.environ, FEIKONG_DATABASE_URL=database_url, FEIKONG_VAR_DIR=str(tmp_path))
    template = tmp_path / "estate.xlsx"
    made = feikong("--template", str(template), env=env)
    assert made.returncode == 0, made.stderr
    assert load_workbook(io.BytesIO(template.read_bytes())).sheetnames[:4] == \
        ["楼栋", "网关", "电表", "账户"]
    filled = tmp_path / "filled.xlsx"
    filled.write_bytes(workbook(small_estate(2, 3)))
    before = table_counts(engine)
    dry = feikong(str(filled), "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "账户: 新增 6，更新 0，不变 0" in dry.stdout
    assert "新增 账户 2003：楼栋=2号楼" in dry.stdout and "nothing written" in dry.stdout
    assert table_counts(engine) == before
    done = feikong(str(filled), "--estate", str(estate_id), env=env)
    assert done.returncode == 0, done.stderr
    assert "电表: 新增 10，更新 0，不变 0" in done.stdout
    assert table_counts(engine)["Account"] == 6
    again = feikong(str(filled), env=env)
    assert "账户: 新增 0，更新 0，不变 6" in again.stdout


def test_a_wrong_file_prints_its_problems_and_imports_nothing(engine, estate_id, database_url,
                                                              tmp_path):
    env = dict(os.environ, FEIKONG_DATABASE_URL=database_url, FEIKONG_VAR_DIR=str(tmp_path))
    rows = small_estate(1, 2)
    rows["accounts"][1]["unit"] = 1
    bad = tmp_path / "bad.xlsx"
    bad.write_bytes(workbook(rows))
    before = table_counts(engine)
    result = feikong(str(bad), env=env)
    assert result.returncode == 1
    assert "1 处错误，未导入任何内容" in result.stderr
    assert "「账户」表第 3 行「表地址」：这块电表（GW1 / 1）已是户号 1001 的电表" in result.stderr
    assert table_counts(engine) == before
