"""The rnngrad command, run as a subprocess: JSON shape, exit codes, one-line errors."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

import rnngrad


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    rnngrad.build_rnn("simple", 16, input_dim=2, recurrent_gain=0.5, length=40).save(
        folder / "vanishing.keras"
    )
    lam = keras.Sequential(
        [keras.Input((20, 2)), keras.layers.Lambda(lambda t: 2 * t), keras.layers.GRU(4)]
    )
    lam.save(folder / "lambda.keras")
    keras.Sequential([keras.Input((5, 2)), keras.layers.Dense(1)]).save(folder / "dense.keras")
    (folder / "corrupt.keras").write_text("not a model")
    x, y = rnngrad.tasks.adding_problem(8, 40, seed=0)
    np.savez(folder / "data.npz", x=x, y=y)
    np.savez(folder / "wrong_shape.npz", x=x[..., :1], y=y)
    np.savez(folder / "no_x.npz", inputs=x)
    return folder


def run(*args, cwd):
    result = subprocess.run(
        [sys.executable, "-m", "rnngrad", *args], cwd=cwd, capture_output=True, text=True
    )
    assert "Traceback" not in result.stderr
    return result


def test_json_report_and_exit_status(files):
    result = run("diagnose", "vanishing.keras", "--data", "data.npz", "--json", cwd=files)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # one JSON object and nothing else
    assert report["verdict"] == "vanishing"
    assert 0 < report["decay_per_step"] < 1 and isinstance(report["horizon"], int)
    layer = report["layers"][0]
    assert layer["kind"] == "SimpleRNN" and len(layer["profile"]) == 40
    assert {"spectral_radius", "sigma_max", "horizon", "decay_per_step"} <= set(layer)
    assert report["inputs"] == "data.npz" and report["loss"] == "mse"
    assert report["batch_size"] == 8  # every row of --data unless --batch says otherwise
    assert result.stderr == ""  # no TensorFlow start-up noise either


def test_fail_on_turns_the_verdict_into_exit_status_one_and_plot_is_written(files):
    result = run(
        "diagnose",
        "vanishing.keras",
        "--fail-on",
        "vanishing,exploding",
        "--plot",
        "p.png",
        cwd=files,
    )
    assert result.returncode == 1
    assert "VANISHING" in result.stdout and "N(0, 1)" in result.stdout
    assert (files / "p.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    "args, message",
    [
        (["diagnose", "missing.keras"], "no such model file"),
        (["diagnose", "corrupt.keras"], "cannot load"),
        (["diagnose", "lambda.keras"], "--unsafe"),
        (["diagnose", "dense.keras"], "no SimpleRNN, LSTM or GRU layer"),
        (["diagnose", "vanishing.keras", "--data", "wrong_shape.npz"], "x must have shape"),
        (["diagnose", "vanishing.keras", "--data", "no_x.npz"], "array named 'x'"),
        (["diagnose", "vanishing.keras", "--fail-on", "sad"], "--fail-on"),
        (["diagnose"], "required"),
    ],
)
def test_errors_print_one_line_and_exit_two(files, args, message):
    result = run(*args, cwd=files)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnngrad: error:"), result.stderr
    assert message in lines[0]
