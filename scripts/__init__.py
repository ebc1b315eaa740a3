"""The project's commands: the main job, the conversion, predict and export CLIs, benchmarks
and reports. Importing :mod:`common` first installs its warning filters (Paddle's "No ccache
found") before any command imports a framework."""
import common  # noqa: F401
