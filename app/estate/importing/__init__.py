"""Bringing an estate in from a workbook: `feikong import`, the console's /manage/import and
the demo's seed all go through `import_file` (docs/import.md).

    result = import_file(session, data, estate_id=1, dry_run=True)
    result.problems   # everything wrong, by sheet, row and column: then nothing was written
    result.counts     # per sheet: created, updated, unchanged

The file is read (`read`), every row checked against the others and the database (`plan`),
and only when nothing is wrong written in the caller's transaction (`apply`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlmodel import Session

from app.console.auth import Who
from app.estate.importing.apply import Progress, apply_plan
from app.estate.importing.plan import Counts, Op, Plan, describe, make_plan
from app.estate.importing.read import FileRefused, Problem, read_file
from app.estate.importing.template import template_bytes, template_workbook

__all__ = ["ImportResult", "Problem", "import_file", "template_bytes", "template_workbook",
           "Counts"]


@dataclass
class ImportResult:
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, Counts] = field(default_factory=dict)
    changes: list[Op] = field(default_factory=list)
    plan: Plan | None = None
    written: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def change_lines(self, limit: int | None = None) -> list[str]:
        """What changes, one line each ("新增 账户 101001：…", "更新 …：before → after")."""
        from app.i18n import N_, gettext

        lines = []
        tariffs = self.plan.tariff_names if self.plan else {}
        for op in self.changes[:limit]:
            before, after = describe(op, tariffs)
            if op.existing is None:
                lines.append(gettext(N_("新增 {sheet} {key}：{after}")).format(
                    sheet=op.sheet.title, key=op.key, after=after))
            else:
                lines.append(gettext(N_("更新 {sheet} {key}：{before} → {after}")).format(
                    sheet=op.sheet.title, key=op.key, before=before, after=after))
        return lines


def import_file(session: Session, data: bytes, *, estate_id: int, dry_run: bool = False,
                who: Who | None = None, client: str = "", file_name: str = "",
                gateway_endpoints: dict[str, tuple[str, int]] | None = None,
                progress: Progress | None = None) -> ImportResult:
    """Check the file and, unless `dry_run` or anything is wrong, write it in `session`'s
    transaction (the caller commits). Nothing is written when `problems` is not empty."""
    try:
        sheets, problems = read_file(data)
    except FileRefused as exc:
        return ImportResult(problems=exc.problems)
    plan = make_plan(session, sheets, estate_id, problems, gateway_endpoints)
    result = ImportResult(problems=plan.problems, counts=plan.counts(), changes=plan.changes(),
                          plan=plan)
    if result.ok and not dry_run:
        apply_plan(session, plan, who=who, client=client, file_name=file_name,
                   progress=progress)
        result.written = True
    return result
