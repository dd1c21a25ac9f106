"""The lines of a topic backup: a record read back is the record written, bytes and all."""

from __future__ import annotations

import pytest

from services.core.errors import ConfigurationError
from services.ops.backup import BACKUP_FORMAT, parse_record_line, read_backup, record_line
from services.ops.tail import TailedRecord


def test_a_record_line_reads_back_as_the_same_record() -> None:
    record = TailedRecord(2, 41, 1_700_000_000_000, None, b"\x00\xff{}", [("ce_id", b"id-1")])
    assert parse_record_line(record_line(record)) == record


def test_a_backup_is_its_header_then_its_records() -> None:
    records = [TailedRecord(p, 0, 1, b"k", b"v", []) for p in range(3)]
    header = f'{{"format":"{BACKUP_FORMAT}","version":1,"topic":"t","partitions":3}}'
    read_header, read_records = read_backup([header, *map(record_line, records), ""])
    assert read_header["partitions"] == 3
    assert list(read_records) == records


def test_a_file_of_another_format_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=BACKUP_FORMAT):
        read_backup(['{"format":"other","version":1}'])
