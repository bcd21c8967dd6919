"""The program: stack config -> settings -> components -> stack outputs."""

from __future__ import annotations

import pulumi

from infra.lab import Lab, export_outputs
from infra.naming import Naming
from infra.settings import ConfigError, load_settings


def main() -> Lab:
    """Declare the lab for the current stack. Invalid configuration stops before any resource."""
    try:
        settings = load_settings()
    except ConfigError as error:
        # RunError prints the message alone, without a Python traceback.
        raise pulumi.RunError(str(error)) from None
    naming = Naming(project=pulumi.get_project(), stack=pulumi.get_stack())
    lab = Lab(naming.prefix, settings, naming)
    export_outputs(lab)
    return lab
