"""Log formats: JSON lines, and journald priorities when stderr is the journal."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

from artifactfs.logsetup import JournalFormatter, JsonFormatter


def _record(level: int, msg: str) -> logging.LogRecord:
    return logging.LogRecord("artifactfs.fs", level, __file__, 1, msg, None, None)


def test_json_lines_carry_time_level_logger_and_message():
    line = JsonFormatter().format(_record(logging.WARNING, 'read: s3://b/k "x"\nsecond'))
    doc = json.loads(line)
    assert "\n" not in line
    assert doc["level"] == "WARNING" and doc["logger"] == "artifactfs.fs"
    assert doc["message"] == 'read: s3://b/k "x"\nsecond' and doc["time"][:2] == "20"


def test_journal_lines_carry_the_syslog_priority_and_no_time():
    assert JournalFormatter().format(_record(logging.ERROR, "boom")) == "<3>artifactfs.fs: boom"
    assert JournalFormatter().format(_record(logging.INFO, "ok")) == "<6>artifactfs.fs: ok"


def test_journald_format_is_chosen_only_when_stderr_is_the_journal(tmp_path):
    """systemd sets JOURNAL_STREAM to stderr's dev:ino; a stale value is ignored."""
    code = ("import logging; from artifactfs.logsetup import setup_logging; "
            "setup_logging(False); logging.getLogger('artifactfs.x').warning('hello')")  # fmt: skip
    out = tmp_path / "stderr"
    with open(out, "wb") as f:
        st = os.fstat(f.fileno())
        for stream, expected in [(f"{st.st_dev}:{st.st_ino}", "<4>artifactfs.x: hello"),
                                 ("1:2", "WARNING artifactfs.x: hello")]:  # fmt: skip
            f.truncate(0)
            f.seek(0)
            env = {**os.environ, "JOURNAL_STREAM": stream}
            subprocess.run([sys.executable, "-c", code], stderr=f, env=env, check=True)
            f.flush()
            assert expected in out.read_text()
