"""The only code that writes memory tables: the admin, the REST API, CSV import and the
SDK all come through here, so every write path validates rows the same way."""

from apps.memory.services.csv_io import csv_export, csv_import
from apps.memory.services.edits import column_edit, table_update
from apps.memory.services.rows import row_create, row_delete, row_to_dict, row_update
from apps.memory.services.schema import (
    column_add,
    column_change_type,
    column_remove,
    column_rename,
    column_update,
)
from apps.memory.services.tables import (
    table_create,
    table_delete,
    table_get,
    table_get_or_infer,
)
from apps.memory.validation import MemoryValidationError

__all__ = ["MemoryValidationError", "column_add", "column_change_type", "column_edit",
           "column_remove", "column_rename", "column_update", "csv_export", "csv_import",
           "row_create", "row_delete", "row_to_dict", "row_update", "table_create",
           "table_delete", "table_get", "table_get_or_infer", "table_update"]
