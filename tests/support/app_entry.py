"""AppTest entry point: runs the real app.py from a folder that has no ``pages/`` directory.

Streamlit's AppTest re-detects a ``pages/`` folder beside the main script before every run and
then takes the legacy multipage path, which reruns only the page script and skips app.py (its
login gate, sidebar and navigation). Anchoring the main script here avoids that; the app's code
is unchanged (page paths are absolute).
"""

import runpy
from pathlib import Path

runpy.run_path(str(Path(__file__).resolve().parents[2] / "app.py"), run_name="__main__")
