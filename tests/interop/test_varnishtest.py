"""Exact-byte upgrade scenarios run by varnishtest (Debian ``varnish``), HAProxy's and
Varnish's own test tool, against a wsgate proxy process (peers.md "Security scenarios")."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.confs import article_conf
from tests.support.ports import free_ports
from tests.support.procs import REPO, require_peer
from tests.support.wsgate import proxy_process

VTC = sorted((REPO / "tests" / "data" / "vtc").glob("*.vtc"))


@pytest.mark.parametrize("vtc", VTC, ids=[p.stem for p in VTC])
def test_vtc(vtc: Path, tmp_path: Path) -> None:
    binary = shutil.which("varnishtest")
    require_peer("varnishtest (Debian package varnish)", binary is not None)
    assert binary is not None
    port, backend = free_ports(2)
    conf = article_conf(port, [backend]).replace(
        "  location / {", "  location /internal { return 403; }\n  location / {"
    )
    with proxy_process(conf, tmp_path, port):
        out = subprocess.run(
            [
                binary,
                "-q",
                "-t",
                "30",
                "-D",
                f"proxy_port={port}",
                "-D",
                f"backend_port={backend}",
                str(vtc),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
