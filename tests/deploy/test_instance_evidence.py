"""The traceback tail an error quotes from an instance log: the user's frames and the exception, whatever
else the log holds around it (gunicorn's lines, other requests' tracebacks, a rotation cut)."""

from __future__ import annotations

import os
from pathlib import Path

from localmaker.deploy.endpoint_view import InstanceView
from localmaker.deploy.instance_evidence import pointer, traceback_tail

LOCALMAKER = Path(__file__).resolve().parents[2] / "localmaker"
LIBRARY_FRAME = f'  File "{LOCALMAKER}/local_endpoint/handlers.py", line 81, in _call\n    return fn(*args)\n'


def _traceback(user_line: str, exception: str, code: str = "    return x['missing']") -> str:
    return ("Traceback (most recent call last):\n" + LIBRARY_FRAME
            + f'  File "/opt/ml/model/code/inference.py", line {user_line}\n{code}\n{exception}\n')


def test_the_users_frames_and_the_exception_are_kept_and_gunicorn_lines_after_it_are_not():
    log = ("[2026-12-07 13:39:25 +0000] [25390] [INFO] Booting worker\n"
           "2026-12-07 13:39:25,001 25395 ERROR localmaker.local_endpoint.app: predict failed\n"
           + _traceback("8, in predict_fn", "KeyError: 'missing'")
           + '127.0.0.1 - - [07/Dec/2026:13:39:25 +0000] "POST /invocations HTTP/1.1" 500 110\n'
           "[2026-12-07 13:39:25 +0000] [25390] [INFO] Handling signal: term\n")

    assert traceback_tail(log) == ('  File "/opt/ml/model/code/inference.py", line 8, in predict_fn\n'
                                   "    return x['missing']\nKeyError: 'missing'")


def test_the_traceback_the_error_names_wins_over_a_later_one_of_another_request():
    log = _traceback("8, in predict_fn", "KeyError: 'missing'") + _traceback("3, in input_fn", "ValueError: bad json")

    assert traceback_tail(log, "KeyError: 'missing' (the traceback is in the instance log)").endswith(
        "line 8, in predict_fn\n    return x['missing']\nKeyError: 'missing'")
    assert traceback_tail(log, "something else").endswith("ValueError: bad json")  # else the newest


def test_a_multi_line_exception_message_is_kept_up_to_five_lines():
    message = "RuntimeError: line one\n" + "".join(f"more {i}\n" for i in range(10))

    tail = traceback_tail(_traceback("2, in model_fn", message.rstrip("\n")))

    assert tail.splitlines()[-5:] == ["RuntimeError: line one", "more 0", "more 1", "more 2", "more 3"]


def test_a_failure_inside_the_toolkit_alone_still_shows_its_last_frames():
    log = "Traceback (most recent call last):\n" + LIBRARY_FRAME + "TypeError: fn() takes 1 argument\n"

    assert traceback_tail(log) == LIBRARY_FRAME + "TypeError: fn() takes 1 argument"


def test_a_log_without_a_traceback_or_cut_inside_one_quotes_nothing():
    assert traceback_tail("") == ""
    assert traceback_tail("[INFO] Booting worker\nKeyError: 'x'\n") == ""
    # Rotation cut the header off: frames without "Traceback (most recent call last):" are not quoted.
    assert traceback_tail('  File "/opt/ml/model/code/inference.py", line 8, in predict_fn\nKeyError: 1\n') == ""


def _instance(log_file: Path) -> InstanceView:
    return InstanceView(instance_id="i-0", url="http://127.0.0.1:1", pid=1, log_file=log_file, device=None)


def test_the_pointer_names_the_newest_log_with_a_traceback_even_past_a_large_log(tmp_path):
    old, new, quiet = tmp_path / "old.log", tmp_path / "new.log", tmp_path / "quiet.log"
    old.write_text(_traceback("2, in model_fn", "RuntimeError: old"))
    new.write_text("x" * 1_000_000 + "\n" + _traceback("2, in model_fn", "RuntimeError: new"))
    quiet.write_text("[INFO] Booting worker\n")
    os.utime(old, (1, 1))

    text = pointer([_instance(quiet), _instance(old), _instance(new)], "RuntimeError")

    assert text.startswith(f"See the instance log {new} for more information. Its traceback ends:\n")
    assert text.endswith("RuntimeError: new")


def test_a_log_that_cannot_be_read_is_still_named(tmp_path):
    missing = tmp_path / "gone" / "i-0.log"

    assert pointer([_instance(missing)], "boom") == f"See the instance log {missing} for more information."
    assert pointer([], "boom") == ""
