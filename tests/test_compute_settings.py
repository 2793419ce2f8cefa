"""Training under each compute setting (--precision bf16, --jit on): split from
test_training.py so that the two test workers share the training tests' time."""
from __future__ import annotations

import numpy as np
import pytest

from mssh_keras.training import train
from conftest import history_rows, run_options


@pytest.fixture(scope="module")
def bf16_runs(tmp_path_factory):
    """bfloat16 (no XLA) straight for 2 epochs, and 1 epoch + a resume; one XLA epoch."""
    root = tmp_path_factory.mktemp("bf16")
    straight = train(run_options(root / "straight", epochs=2, precision="bf16", jit="off"))
    train(run_options(root / "resumed", epochs=1, precision="bf16", jit="off"))
    resumed = train(run_options(root / "resumed", epochs=2, precision="bf16", jit="off",
                                resume=True))
    xla = train(run_options(root / "xla", epochs=1, precision="fp32", jit="on"))
    return {"root": root, "straight": straight, "resumed": resumed, "xla": xla}


def test_bf16_and_xla_steps_train_with_finite_losses(bf16_runs):
    root = bf16_runs["root"]
    for name in ("straight", "xla"):
        losses = [float(r["loss"]) for r in history_rows(root / name)]
        assert losses and all(np.isfinite(losses)), (name, losses)
    assert bf16_runs["straight"]["network"].dtype_policy.name == "mixed_bfloat16"
    assert bf16_runs["xla"]["network"].dtype_policy.name == "float32"


def test_bf16_resume_is_exact(bf16_runs):
    a, b = bf16_runs["straight"]["network"], bf16_runs["resumed"]["network"]
    for wa, wb, v in zip(a.get_weights(), b.get_weights(), a.weights):
        np.testing.assert_array_equal(wa, wb, err_msg=v.path)


def test_a_bf16_run_saves_float32_models_that_export_and_verify(bf16_runs, tmp_path):
    """final.keras / best.keras of a bfloat16 run are float32 networks with the run's
    weights, and their TFLite export verifies within the fp32 tolerance."""
    import keras

    from mssh_keras.data.sample_crops import SampleCrops
    from mssh_keras.export import export
    from mssh_keras.model_file import load_network
    root = bf16_runs["root"] / "straight"
    trained = bf16_runs["straight"]["network"]
    for name in ("final.keras", "best.keras"):
        net = keras.saving.load_model(root / name, compile=False)
        assert net.dtype_policy.name == "float32"
        assert all(w.dtype == "float32" for w in net.weights)
    final = load_network(root / "final.keras")
    for wa, wb in zip(final.get_weights(), trained.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    [done] = export(final, ["tflite"], tmp_path, source=root / "final.keras",
                    crops=SampleCrops(), verify_samples=4, echo=lambda *a: None)
    report = done.verification
    assert report["passed"] and report["max_abs_diff"] <= 1e-4, report
