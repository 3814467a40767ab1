"""scripts/recipe_planted_study.py: per-seed records, resuming from --out, and the table,
with the training replaced by a stub (the training itself is tests/tasks/test_ivae_recipe.py)."""

import json

from tests.scripts.loader import load_script


def test_records_resume_and_table(tmp_path, monkeypatch, capsys):
    study = load_script("recipe_planted_study")
    calls = []

    def fake(config):
        calls.append((config.seed, config.model.target_basis, config.evals.food.every_steps))
        value = 0.1 * (config.seed + 1)
        scalars = {
            f"{side}/best_abs_rho/planted_{f}": value + (0.3 if side == "prior_mean" else 0.0)
            for side in ("target", "prior_mean")
            for f in study.FACTORS
        }
        trained = {k: v + 0.05 for k, v in scalars.items()}
        return {"init": scalars, "trained": trained, "train_seconds": 1.0, "final_loss": 2.0}

    monkeypatch.setattr(study, "train_and_score", fake)
    out = str(tmp_path / "p.jsonl")
    study.main(["--seeds=0,1", f"--out={out}", "--set", "model.target_basis=pca"])
    assert calls == [(0, "pca", 0), (1, "pca", 0)]
    study.main(["--seeds=0,1,2", f"--out={out}", "--set", "model.target_basis=pca"])
    assert [c[0] for c in calls] == [0, 1, 2]  # seeds 0 and 1 were read back
    recs = [json.loads(line) for line in open(out)]
    assert [r["seed"] for r in recs] == [0, 1, 2]
    assert recs[1]["rho"]["trained"]["target"]["wateriness"] == 0.25
    table = capsys.readouterr().out
    assert (
        "| 2 | 0.30 / 0.30 / 0.30 | 0.35 / 0.35 / 0.35 | 0.60 / 0.60 / 0.60 | 0.65 / 0.65 / 0.65 |"
        in table
    )
    assert "trained - init min [0.05, 0.05, 0.05]" in table
