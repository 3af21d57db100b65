"""``wsgate proxy`` command line: -t, -T, errors and exit codes, as nginx's (§6.5)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.procs import wsgate_cmd

GOOD = """events {}
http {
    include inc/*.conf;
    server { listen 127.0.0.1:1; location / { return 200 ok; } }
}
"""


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        wsgate_cmd("proxy", *args), capture_output=True, text=True, timeout=30, check=False
    )


def test_test_embedded_default() -> None:
    out = run("-t")
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == [
        "wsgate: the configuration file <embedded>/default.conf syntax is ok",
        "wsgate: configuration file <embedded>/default.conf test is successful",
    ]


def test_dump_includes(tmp_path: Path) -> None:
    (tmp_path / "inc").mkdir()
    inc = tmp_path / "inc" / "a.conf"
    inc.write_text("# included\n")
    main = tmp_path / "nginx.conf"
    main.write_text(GOOD)
    out = run("-T", "-c", str(main))
    assert out.returncode == 0, out.stderr
    assert out.stdout == (
        f"# configuration file {main}:\n{GOOD}\n# configuration file {inc}:\n# included\n\n"
    )


def test_quiet_test(tmp_path: Path) -> None:
    main = tmp_path / "nginx.conf"
    main.write_text(GOOD)
    out = run("-tq", "-c", str(main))
    assert (out.returncode, out.stderr) == (0, "")


def test_error_in_file_and_line(tmp_path: Path) -> None:
    main = tmp_path / "nginx.conf"
    main.write_text("events {}\nhttp {\n    server {\n        bogus on;\n    }\n}\n")
    out = run("-t", "-c", str(main))
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f'wsgate: [emerg] unknown directive "bogus" in {main}:4',
        f"wsgate: configuration file {main} test failed",
    ]


def test_missing_events_is_reported_after_syntax_ok(tmp_path: Path) -> None:
    main = tmp_path / "nginx.conf"
    main.write_text("http { }\n")
    out = run("-t", "-c", str(main))
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"wsgate: the configuration file {main} syntax is ok",
        'wsgate: [emerg] no "events" section in configuration',
        f"wsgate: configuration file {main} test failed",
    ]


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "none.conf"
    out = run("-t", "-c", str(missing))
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f'wsgate: [emerg] open() "{missing}" failed (2: No such file or directory)',
        f"wsgate: configuration file {missing} test failed",
    ]


def test_invalid_option_and_version() -> None:
    out = run("-x")
    assert (out.returncode, out.stderr) == (1, 'wsgate: invalid option: "x"\n')
    out = run("-v")
    assert out.returncode == 0 and out.stderr.startswith("wsgate version: wsgate/")


def test_python_dash_m_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "wsgate", "--version"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0 and out.stdout.startswith("wsgate ")
