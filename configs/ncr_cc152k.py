"""NCR-style training on CC152K (Conceptual Captions subset with real, unknown noise).

  python train.py --config=configs/ncr_cc152k.py --config.data.root=/data --workdir=runs/ncr_cc

`/data` holds `cc152k_precomp/{train,dev,test}_ims.npy`, `{split}_caps.tsv` (one caption per
image) and `vocab/cc152k_precomp_vocab.json`. No noise is injected (ratio 0: the data's own
noise, estimated at 3-20%), so split quality against a truth is not reported. NCR's recipe:
batch 128, Adam 2e-4; 10 warm-up epochs then 40 co-training epochs, lr x0.1 after 30.
"""

from configs.common import parse_arg
from configs.retrieval_common import family_schedule, published_data, retrieval_config


def get_config(arg=None):
    a = parse_arg(arg, method="ncr")
    config = retrieval_config(a.method)
    published_data(config, "cc152k")
    config.data.noise.ratio = 0.0
    family_schedule(config, "cc152k", warmup=10, epochs=40, lr_update=30)
    return config
