"""Running plans: the inline oracle now; worker processes and Ray in later stages."""

from edgeweave.runtime.inline import run_inline

__all__ = ["run_inline"]
