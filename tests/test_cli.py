"""The rnngrad command: JSON shape, exit codes, one-line errors.

Most cases run the command's ``main`` in this process (capturing file descriptors 1 and
2, where it writes); the cases about a fresh process (no TensorFlow start-up noise, no
traceback, ``python -m rnngrad``) run it as a subprocess.
"""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

import rnngrad
from rnngrad.cli import main

# the command line end to end (model files, subprocesses): `make integration`
pytestmark = pytest.mark.integration


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
    keras.Sequential(
        [keras.Input((12, 3, 2)), keras.layers.ConvLSTM1D(2, 2), keras.layers.Flatten()]
    ).save(folder / "convlstm.keras")
    x, y = rnngrad.tasks.adding_problem(8, 40, seed=0)
    np.savez(folder / "data.npz", x=x, y=y)
    np.save(folder / "x.npy", x)
    np.savez(folder / "wrong_shape.npz", x=x[..., :1], y=y)
    np.savez(folder / "no_x.npz", inputs=x)
    (folder / "text.npz").write_text("x,y\n1,2\n")
    (folder / "text.npy").write_text("1 2 3\n")
    classifier = keras.Sequential(
        [
            keras.Input((30,), dtype="int32"),
            keras.layers.Embedding(50, 8, mask_zero=True),
            keras.layers.Bidirectional(keras.layers.LSTM(6), name="bi"),
            keras.layers.Dense(3),
        ]
    )
    classifier.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    classifier.save(folder / "classifier.keras")
    tokens = np.random.default_rng(0).integers(1, 50, size=(6, 30))
    np.savez(folder / "tokens.npz", x=tokens, y=np.arange(6) % 3)
    return folder


def run_fresh(*args, cwd):
    """The command in a fresh process, as a user runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "rnngrad", *args], cwd=cwd, capture_output=True, text=True
    )
    assert "Traceback" not in result.stderr
    return result


@pytest.fixture
def run(capfd, monkeypatch):
    """The command's main() in this process, with its output captured."""

    def call(*args, cwd):
        monkeypatch.chdir(cwd)
        capfd.readouterr()
        status = main(list(args))
        out, err = capfd.readouterr()
        assert "Traceback" not in err
        return subprocess.CompletedProcess(args, status, out, err)

    return call


def test_json_report_and_exit_status(files):
    result = run_fresh("diagnose", "vanishing.keras", "--data", "data.npz", "--json", cwd=files)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # one JSON object and nothing else
    assert report["verdict"] == "vanishing"
    assert 0 < report["decay_per_step"] < 1 and isinstance(report["horizon"], int)
    layer = report["layers"][0]
    assert layer["layer_class"] == "SimpleRNN" and len(layer["profile"]) == 40
    assert {"spectral_radius", "sigma_max", "horizon", "decay_per_step", "transport"} <= set(layer)
    assert report["inputs"] == "data.npz" and report["loss"].startswith("mse")
    assert report["thresholds"]["vanishing_ratio"] == 1e-3
    assert report["batch_size"] == 8  # every row of --data unless --batch says otherwise
    assert result.stderr == ""  # no TensorFlow start-up noise either


def test_x_from_a_npy_file(files, run):
    result = run("diagnose", "vanishing.keras", "--data", "x.npy", "--json", cwd=files)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["batch_size"] == 8


def test_a_saved_compiled_classifier_is_diagnosed_with_its_own_loss(files, run):
    result = run("diagnose", "classifier.keras", "--data", "tokens.npz", "--json", cwd=files)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert "compiled" in report["loss"] and "from_logits=True" in report["loss"]
    assert [layer["name"] for layer in report["layers"]] == ["bi (forward)", "bi (backward)"]


def test_random_token_ids_for_an_embedding_model(files, run):
    result = run("diagnose", "classifier.keras", "--batch", "4", "--json", cwd=files)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["inputs"] == "random" and report["sequence_length"] == 30


def test_fail_on_turns_the_verdict_into_exit_status_one_and_plot_is_written(files, run):
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
    assert "VANISHING" in result.stdout and "inputs were random" in result.stdout
    assert (files / "p.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    "args, message",
    [
        (["diagnose", "missing.keras"], "no such model file"),
        (["diagnose", "corrupt.keras"], "not a valid Keras archive"),
        (["diagnose", "lambda.keras"], "--unsafe"),
        (["diagnose", "dense.keras"], "no recurrent"),
        (["diagnose", "vanishing.keras", "--data", "wrong_shape.npz"], "x must have shape"),
        (["diagnose", "vanishing.keras", "--data", "no_x.npz"], "array named 'x'"),
        (["diagnose", "vanishing.keras", "--data", "text.npz"], "is not a .npz archive"),
        (["diagnose", "vanishing.keras", "--data", "text.npy"], "is not a .npy file"),
        (["diagnose", "vanishing.keras", "--loss", "nope"], "Keras loss name"),
        (["diagnose", "vanishing.keras", "--from-logits"], "--from-logits needs --loss"),
        (["diagnose", "vanishing.keras", "--loss", "mse"], "--loss mse needs targets"),
        (["diagnose", "vanishing.keras", "--data", "x.npy", "--length", "9"], "--length"),
        # the model's own refusal, before any data is asked for
        (["diagnose", "convlstm.keras"], "ConvLSTM1D"),
        (["diagnose", "vanishing.keras", "--fail-on", "sad"], "--fail-on"),
        (["diagnose"], "required"),
    ],
)
def test_errors_print_one_line_and_exit_two(files, run, args, message):
    result = run(*args, cwd=files)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnngrad: error:"), result.stderr
    assert message in lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["diagnose", "missing.keras"],
        ["diagnose", "corrupt.keras"],
        ["diagnose", "vanishing.keras", "--fail-on", "sad"],
        ["diagnose", "vanishing.keras", "--data", "text.npz"],
        ["diagnose", "vanishing.keras", "--data", "x.npy", "--length", "9"],
    ],
)
def test_usage_errors_answer_without_importing_tensorflow(files, args):
    probe = (
        "import sys; from rnngrad.cli import main; status = main(sys.argv[1:]); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; "
        "sys.exit(status)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, *args], cwd=files, capture_output=True, text=True
    )
    assert result.returncode == 2, result.stderr


CUSTOM_CELL_MODULE = """
import keras


@keras.saving.register_keras_serializable(package="tests")
class HalfCell(keras.layers.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = self.state_size = units

    def build(self, shape):
        self.kernel = self.add_weight(shape=(shape[-1], self.units))
        self.recurrent = self.add_weight(shape=(self.units, self.units))

    def call(self, x, states):
        h = 0.5 * keras.ops.tanh(x @ self.kernel + states[0] @ self.recurrent)
        return h, [h]

    def get_config(self):
        return {**super().get_config(), "units": self.units}
"""


def test_a_custom_cell_needs_its_module_imported_and_the_error_names_it(tmp_path):
    (tmp_path / "halfcells.py").write_text(CUSTOM_CELL_MODULE)
    sys.path.insert(0, str(tmp_path))
    try:
        import halfcells
    finally:
        sys.path.remove(str(tmp_path))
    inputs = keras.Input((10, 2))
    hidden = keras.layers.RNN(halfcells.HalfCell(4))(inputs)
    keras.Model(inputs, keras.layers.Dense(1)(hidden)).save(tmp_path / "custom.keras")
    missing = run_fresh("diagnose", "custom.keras", cwd=tmp_path)
    assert missing.returncode == 2
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 1 and "'HalfCell'" in lines[0] and "--import halfcells" in lines[0]
    found = run_fresh("diagnose", "custom.keras", "--import", "halfcells", "--json", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["layers"][0]["cell"] == "custom"


def test_an_import_that_fails_is_one_line(files, run):
    wrong = run("diagnose", "vanishing.keras", "--import", "no_such_module", cwd=files)
    assert wrong.returncode == 2 and wrong.stderr.startswith("rnngrad: error: --import no_such")
