import logging

from artifactfs.logsetup import RedactSecrets


def _record(msg, *args):
    return logging.LogRecord("t", logging.INFO, __file__, 1, msg, args, None)


def test_known_secret_is_masked_in_message_and_args():
    f = RedactSecrets()
    f.add("s3cr3t-VALUE-123")
    rec = _record("creds %s and %s", "s3cr3t-VALUE-123", "fine")
    f.filter(rec)
    assert "s3cr3t" not in rec.getMessage()
    assert "fine" in rec.getMessage()


def test_secret_assignments_are_masked():
    f = RedactSecrets()
    rec = _record("config: aws_secret_access_key=abcdEFGH1234 region=us-east-1")
    f.filter(rec)
    assert "abcdEFGH1234" not in rec.getMessage()
    assert "region=us-east-1" in rec.getMessage()


def test_secret_in_exception_text_is_masked():
    f = RedactSecrets()
    f.add("topsecretvalue")
    try:
        raise ValueError("bad key topsecretvalue")
    except ValueError:
        import sys

        rec = logging.LogRecord("t", logging.ERROR, __file__, 1, "boom", None, sys.exc_info())
    f.filter(rec)
    assert "topsecretvalue" not in logging.Formatter().format(rec)
