from __future__ import annotations

import os
import subprocess
import sys

import pytest

from llmos.commands import serve


def test_blas_gets_one_thread_unless_the_operator_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(serve.BLAS_THREADS, raising=False)
    serve.single_threaded_blas()
    assert os.environ[serve.BLAS_THREADS] == "1"
    monkeypatch.setenv(serve.BLAS_THREADS, "4")
    serve.single_threaded_blas()
    assert os.environ[serve.BLAS_THREADS] == "4"


def test_numpy_then_starts_no_threads_of_its_own() -> None:
    # Without the setting OpenBLAS starts one thread per further core (CI has two cores).
    code = ("import os; from llmos.commands.serve import single_threaded_blas; "
            "single_threaded_blas(); import numpy; print(len(os.listdir('/proc/self/task')))")
    env = {k: v for k, v in os.environ.items() if k != serve.BLAS_THREADS}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env=env)
    assert done.stdout.strip() == "1"
