"""NCR-style training on MS-COCO precomputed features (a local copy; nothing is fetched).

  python train.py --config=configs/ncr_coco.py --config.data.root=/data --workdir=runs/ncr_coco

`/data` holds `coco_precomp/{train,dev,testall}_ims.npy` (train is ~33 GB: memory-mapped,
read batch by batch), `{split}_caps.txt` and `vocab/coco_precomp_vocab.json`. NCR's recipe:
batch 128, Adam 2e-4, grad-clip 2; 10 warm-up epochs then 20 co-training epochs, lr x0.1 after
10. Test on `testall` (5,000 images): 1K (mean over 5 folds) and 5K (`test/5k/...`).
"""

from configs.common import parse_arg
from configs.retrieval_common import family_schedule, published_data, retrieval_config


def get_config(arg=None):
    a = parse_arg(arg, method="ncr", noise=0.2, convention="caption")
    config = retrieval_config(a.method)
    published_data(config, "coco")
    config.data.test_split = "testall"
    config.evals.test_folds = 5
    config.data.noise.ratio = a.noise
    config.data.noise.convention = a.convention
    family_schedule(config, "coco", warmup=10, epochs=20, lr_update=10)
    return config
