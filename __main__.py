"""Pulumi entry point: everything lives in infra/."""

from infra.program import main

main()
