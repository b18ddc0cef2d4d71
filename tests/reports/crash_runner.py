"""A batch runner that dies: run as a process of its own, it runs the queued jobs of a database
and kills itself (os._exit, as the OOM killer or a power cut would: no rollback, no cleanup)
just before the `stop_at`-th UPDATE of a job's progress reaches the database, in the middle of
that step's transaction. What it had committed stays; what it had not is gone.

    python -m tests.reports.crash_runner DATABASE_URL VAR_DIR STOP_AT
"""

from __future__ import annotations

import os
import sys

from sqlalchemy import event

from app.batch.runner import Runner
from app.db import make_engine
from app.settings import Settings


def main(url: str, var_dir: str, stop_at: int) -> None:
    engine = make_engine(url)
    seen = [0]

    @event.listens_for(engine, "before_cursor_execute")
    def die(_conn, _cursor, statement, _params, _context, _many):
        if statement.lstrip().upper().startswith("UPDATE BATCH_JOB SET DONE"):
            seen[0] += 1
            if seen[0] == stop_at:
                sys.stdout.write(f"dying at progress update {stop_at}\n")
                sys.stdout.flush()
                os._exit(3)

    Runner(engine, Settings(database_url=url, var_dir=var_dir)).run_pending()
    sys.exit(0)  # every job ended before STOP_AT: say so by the exit code


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
