"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

House rules for a migration:
- Migrations are the only way the schema is made: change models.py and add a revision together;
  `alembic check` (tests/test_migrations.py) fails on any drift between the two.
- Every revision has a working downgrade; the test walks every revision down and up.
- Use `op.batch_alter_table` for ALTERs, so SQLite (copy-and-move) works like the servers.
- Enums are VARCHARs storing values: adding a value needs no migration, renaming one does.
- Give every string a length (MariaDB indexes need one) and every constraint a name (models.py
  NAMING_CONVENTION), so later revisions can drop it on every backend.
- Times are UTC: UTCDateTime in the models; plain DateTime here (timezone=True on PostgreSQL).
- Data changes are set-based SQL (UPDATE ... WHERE), never Python loops over rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}

revision: str = ${repr(up_revision)}
down_revision: str | Sequence[str] | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
