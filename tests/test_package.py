"""The package as a whole: import hygiene and the command line's surface."""

import subprocess
import sys

import pytest

from dnnstress.cli import build_parser, main


def test_importing_dnnstress_never_imports_gpu_packages():
    code = ("import sys, dnnstress, dnnstress.stress, dnnstress.classify, dnnstress.metrics, "
            "dnnstress.sweep, dnnstress.extract, dnnstress.report, dnnstress.cli, "
            "dnnstress._cuda; dnnstress.cli.build_parser(); "
            "print(sorted(m for m in ('cupy', 'cuml', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_every_command_and_benchmark_is_registered():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert set(commands) == {"demo", "extract", "models", "data", "sweep", "report", "bench"}
    topics = commands["bench"]._subparsers._group_actions[0].choices
    assert set(topics) == {"quantize", "svm", "sweep", "extract"}


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_bad_input_is_one_clear_line(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dnnstress sweep: error:") and "missing.npz" in err
    assert "Traceback" not in err


def test_version():
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
