"""The package as a whole: import hygiene and the command line's surface."""

import subprocess
import sys

import pytest

from dnnstress.cli import build_parser, main


def test_importing_dnnstress_never_imports_gpu_or_optional_packages():
    code = ("import sys, dnnstress, dnnstress.stress, dnnstress.classify, dnnstress.metrics, "
            "dnnstress.sweep, dnnstress.extract, dnnstress.report, dnnstress.cli, "
            "dnnstress._cuda; dnnstress.cli.build_parser(); "
            "print(sorted(m for m in ('cupy', 'cuml', 'onnxruntime', 'distributed', 'faiss') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_every_command_and_benchmark_is_registered():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert set(commands) == {"demo", "extract", "models", "data", "sweep", "report", "bench",
                             "doctor", "campaign"}
    topics = commands["bench"]._subparsers._group_actions[0].choices
    assert set(topics) == {"quantize", "svm", "sweep", "extract", "memory", "retrieval",
                           "campaign"}


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


def test_models_lists_the_embedded_network_and_any_onnx_file(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "efficientnet-lite0 (default)" in listing and "pooled" in listing
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["hidden"]), helper.make_node("Neg", ["hidden"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "m.onnx")
    assert main(["models", "--onnx", str(tmp_path / "m.onnx")]) == 0
    assert "hidden" in capsys.readouterr().out


@pytest.mark.parametrize("requested, full, expected", [(None, False, 6000), (None, True, None),
                                                       (500, True, 500), (0, False, 0)])
def test_demo_subset_sizes(requested, full, expected):
    from dnnstress.commands.demo import _size

    assert _size(requested, 6000, full) == expected
