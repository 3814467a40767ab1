"""The iIVAE task reads only declared config keys and checks latent_dim against the data."""

import numpy as np
import pytest

from configs import ivae_synthetic
from jaxmr.tasks import TASKS, build_task
from jaxmr.train import loop


def test_latent_dim_must_match_the_factors_of_a_user_npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, u=rng.normal(size=(128, 4)), x=rng.normal(size=(128, 12)), s=np.ones((128, 10)))
    config = ivae_synthetic.get_config("smoke")
    config.data.path = str(path)
    with pytest.raises(ValueError) as info:
        TASKS["ivae"](config)
    assert str(info.value) == (
        f"config.model.latent_dim=5 but the true factors ('s' in {path}) have 10 columns, so "
        "MCC would score 5 latents against 10 factors; set --config.model.latent_dim=10"
    )
    config.model.latent_dim = 10
    assert TASKS["ivae"](config).info["latent_dim"] == 10


@pytest.mark.parametrize("arg", ["smoke", "smoke,variant=ivae", "smoke,variant=isometry"])
def test_synthetic_task_reads_only_declared_keys(strict_config_get, arg):
    TASKS["ivae"](ivae_synthetic.get_config(arg))
    assert "target_mode" in strict_config_get  # the check saw the reads


def test_trainer_reads_only_declared_keys(strict_config_get, tmp_path):
    config = ivae_synthetic.get_config("smoke")
    config.total_steps = 2
    loop.train_and_evaluate(build_task(config), config, str(tmp_path / "run"))
