"""Loaded at start-up by the worker processes of the fault-point tests only: this folder is put
on their PYTHONPATH by tests.chaos.faults.worker_env, never on a product process's. It arms the
fault points named there (see tests/chaos/faults.py); without TASKBENCH_FAULTS_DIR it does
nothing."""

import os

if os.environ.get("TASKBENCH_FAULTS_DIR"):
    from tests.chaos.faults import install

    install()
