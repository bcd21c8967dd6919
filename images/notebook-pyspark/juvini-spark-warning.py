"""Show the hub's JUVINI_SPARK_WARNING in the notebook.

The hub sets JUVINI_SPARK_WARNING on a PySpark server it could not give a Spark port pair
(all in use): Spark runs in local mode only there. The PySpark kernel's launcher
(juvini-pyspark-kernel) runs this file at kernel start when the variable is set; it prints
the warning on the kernel's stderr above the output of the first cell the user runs,
where JupyterLab shows it (a kernel's output at start-up belongs to no cell and is not shown).
Runs in the user's namespace: it leaves no name behind.
"""


def _juvini_show_spark_warning() -> None:
    import os
    import sys

    from IPython import get_ipython

    message = os.environ.get("JUVINI_SPARK_WARNING")
    shell = get_ipython()
    if not message or shell is None:
        return

    def show(info: object) -> None:
        shell.events.unregister("pre_run_cell", show)
        sys.stderr.write(f"Juvini: {message}\n")

    shell.events.register("pre_run_cell", show)


_juvini_show_spark_warning()
del _juvini_show_spark_warning
