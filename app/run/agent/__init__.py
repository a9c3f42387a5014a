"""The agent kind's run: loop, inspector, stuck detection, delegation, waiting."""
