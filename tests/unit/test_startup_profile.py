"""The server-start profiler's parsing (tests/support/startup.py), on a sample of -X importtime output."""

from __future__ import annotations

import pytest

from tests.support.startup import imported, parse_importtime, top_imports, total_import_seconds

pytestmark = pytest.mark.unit

SAMPLE = """\
import time: self [us] | cumulative | imported package
import time:       120 |        120 |   _io
[I 2026-11-23 15:11:13.704 ServerApp] a server log line in between
import time:        76 |         76 |       rfc3987
import time:       900 |     800900 |       rfc3987_syntax.syntax_helpers
import time:      1000 |     802000 |     jsonschema._format
import time:       500 |     802500 |   jsonschema
import time:       200 |     300000 | jupyterhub.log
import time:       300 |     900000 | jupyter_server.serverapp
"""


def test_parse_importtime_reads_times_depths_and_skips_other_lines() -> None:
    imports = parse_importtime(SAMPLE)
    assert [item.module for item in imports] == [
        "_io",
        "rfc3987",
        "rfc3987_syntax.syntax_helpers",
        "jsonschema._format",
        "jsonschema",
        "jupyterhub.log",
        "jupyter_server.serverapp",
    ]
    helpers = imports[2]
    assert (helpers.self_seconds, helpers.cumulative_seconds, helpers.depth) == (0.0009, 0.8009, 3)
    assert imports[-1].depth == 0


def test_top_imports_by_cumulative_and_by_self_time() -> None:
    imports = parse_importtime(SAMPLE)
    assert [item.module for item in top_imports(imports, 2)] == ["jupyter_server.serverapp", "jsonschema"]
    assert top_imports(imports, 1, by="self")[0].module == "jsonschema._format"
    with pytest.raises(ValueError, match="cumulative"):
        top_imports(imports, by="wall")


def test_imported_matches_a_module_and_its_submodules() -> None:
    imports = parse_importtime(SAMPLE)
    assert imported(imports, "rfc3987_syntax") and imported(imports, "jsonschema")
    assert not imported(imports, "lark") and not imported(imports, "jsonschema_specifications")


def test_total_import_seconds_adds_the_top_level_imports() -> None:
    assert total_import_seconds(parse_importtime(SAMPLE)) == pytest.approx(1.2)
