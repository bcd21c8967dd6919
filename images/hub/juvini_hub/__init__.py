"""Juvini's additions to JupyterHub, installed into the hub image.

The rendered jupyterhub_config.py only chooses classes from here and sets their options;
the behaviour lives in these modules, where unit tests can reach it.
"""
