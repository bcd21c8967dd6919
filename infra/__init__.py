"""Juvini: a multi-user JupyterHub data-science lab on Docker hosts, as a Pulumi program."""
