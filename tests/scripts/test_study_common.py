"""What every study script shares: the `--set KEY=VALUE` parser, and `run_jobs` passing a
stop signal on to its worker processes."""

import os
import signal
import threading
import time

import pytest

from scripts.study_common import parse_set, run_jobs


def _job_until_sigterm(job: dict) -> dict:
    """A stand-in for a training run: marks that it started, then works until SIGTERM (as the
    training loop does, it then finishes cleanly and reports that it was stopped)."""
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    open(os.path.join(job["dir"], f"started_{job['i']}"), "w").close()
    stopped.wait(timeout=120)
    return {"i": job["i"], "stopped": stopped.is_set()}


def test_parse_set_reads_literals_tuples_booleans_and_strings():
    got = parse_set(
        ["a.b=3", "lr=2e-4", "steps=(1560,)", "flag=true", "other=False", "name=labeled_pass"]
    )
    assert got == {
        "a.b": 3,
        "lr": 2e-4,
        "steps": (1560,),
        "flag": True,
        "other": False,
        "name": "labeled_pass",
    }
    assert isinstance(got["steps"], tuple)


@pytest.mark.parametrize("item", ["no_equals_sign", "=3"])
def test_parse_set_refuses_an_item_without_a_key_and_value(item):
    with pytest.raises(SystemExit, match="expected KEY=VALUE"):
        parse_set([item])


def test_a_signalled_study_stops_its_workers_and_starts_no_queued_job(tmp_path):
    # Before, a `kill` of a study with --jobs 2 killed only the study process: its workers
    # trained on, orphaned, and hung at the end with no one to report to.
    jobs = [{"i": i, "dir": str(tmp_path)} for i in range(5)]
    before = signal.getsignal(signal.SIGTERM)

    def signal_when_two_started():
        while len(list(tmp_path.glob("started_*"))) < 2:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=signal_when_two_started, daemon=True).start()
    done, errors = [], []
    run_jobs(
        _job_until_sigterm,
        jobs,
        workers=2,
        on_done=lambda job, row: done.append(row),
        on_error=lambda job, exc: errors.append(exc) or True,
    )
    assert errors == []
    assert len(done) == 2 and all(r["stopped"] for r in done)  # both got the SIGTERM
    assert len(list(tmp_path.glob("started_*"))) == 2  # the three queued never started
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back
